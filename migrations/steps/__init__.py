"""One module per `manage.py migrate_data` step. Each has HELP (one line), DESCRIPTION (the --help
text), add_arguments(parser) and run(options, out) -> None; a refusal raises SliceRefused or
StepRefused with a sentence that says what to do."""


class StepRefused(Exception):
    """A step that cannot run now (wrong phase, a gate not passed, a lock held by someone else)."""
