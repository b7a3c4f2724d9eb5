"""What the steps that move write ownership (cutover, rollback, retire) share on the command line:
who runs them, and how a run's outcome is printed and turned into the command's exit status."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from migrations.cutover import DEFAULT_MAX_FREEZE_MS, DEFAULT_SEQUENCE_GAP, CutoverResult
from migrations.models import RunOutcome
from migrations.steps import StepRefused


def who_add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--who", default=None, help="Operator name for the run record and the audit log (default: OS user)."
    )
    # Holds the slice's run lock this long before starting: a rehearsal (or a test) of two operators.
    parser.add_argument("--hold-lock", type=float, default=0.0, help=argparse.SUPPRESS)


def freeze_arguments_add(parser: argparse.ArgumentParser, *, freeze: str, gap: str) -> None:
    """--max-freeze-ms, --sequence-gap and --dry-run of a step that moves write ownership."""
    parser.add_argument(
        "--max-freeze-ms",
        type=int,
        default=DEFAULT_MAX_FREEZE_MS,
        help=f"{freeze} (default {DEFAULT_MAX_FREEZE_MS}).",
    )
    parser.add_argument(
        "--sequence-gap",
        type=int,
        default=DEFAULT_SEQUENCE_GAP,
        help=f"{gap} (default {DEFAULT_SEQUENCE_GAP}).",
    )
    parser.add_argument("--dry-run", action="store_true", help="Check and show the steps; change nothing.")
    who_add_argument(parser)


def who(options: dict[str, Any]) -> str:
    return options.get("who") or os.environ.get("STRANGLER_OPERATOR") or getpass.getuser()


def result_report(result: CutoverResult, out: Any) -> None:
    """Prints the run and fails the command (exit status 1) when it aborted or failed."""
    if result.outcome == RunOutcome.DRY_RUN:
        out.write(f"DRY RUN, nothing changed. {result.kind} {result.slice_name} would:")
    for action in result.actions:
        out.write(f"  {action}")
    out.write(result.summary())
    if result.run_id is not None:
        out.write(f"recorded as run {result.run_id}")
    if result.outcome in (RunOutcome.ABORTED, RunOutcome.FAILED):
        raise StepRefused(
            f"The {result.kind} of {result.slice_name!r} {result.outcome} at step {result.failed_step!r}; "
            f"the slice stays {result.to_phase}. {result.message}"
        )
