"""A second system's process registration, for the test that the toolkit resolves any module."""


def other_commands(*, port: int, web_workers: int = 1) -> dict[str, list[str]]:
    return {"web": ["serve", str(port), str(web_workers)]}
