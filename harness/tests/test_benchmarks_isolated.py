"""Every benchmark runs after any other (defect 16): each declares databases of its own, resets
them through the harness and drops them at the end, and none reaches into tests/.

Read from the scripts' source: running them takes minutes each (`make bench` does)."""

import ast
import re

from ops.process_group import PROJECT_ROOT

BENCHMARKS = sorted(
    path for path in (PROJECT_ROOT / "bench").glob("*.py") if 'if __name__ == "__main__":' in path.read_text()
)


def test_there_are_benchmarks_to_check() -> None:
    assert {path.stem for path in BENCHMARKS} >= {"cdc", "consumers", "legacy_baseline", "proxy"}


def test_each_benchmark_runs_on_fresh_databases_of_its_own_and_drops_them() -> None:
    names = {}
    for path in BENCHMARKS:
        source = path.read_text()
        declared = re.findall(r'BENCH_PREFIX = bench_django_start\("([a-z_]+)"[,)]', source)
        assert len(declared) == 1, f"{path.name} declares no databases of its own"
        names[path.name] = declared[0]
        assert "own_databases(BENCH_PREFIX)" in source, f"{path.name} does not reset and drop its databases"
        assert "DB_NAME_PREFIX" not in source.split('"""', 2)[2], f"{path.name} sets its own prefix by hand"
    assert len(set(names.values())) == len(names), f"two benchmarks share databases: {names}"


def test_no_benchmark_imports_the_test_suite() -> None:
    for path in (PROJECT_ROOT / "bench").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(m == "tests" or m.startswith("tests.") for m in modules), path.name
        assert "tests." not in path.read_text(), f"{path.name} names a tests/ module"
