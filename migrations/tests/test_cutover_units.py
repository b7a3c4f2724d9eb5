"""Pure parts of the cutover, rollback and retire: what a run prints, and the archive names."""

from __future__ import annotations

from migrations.cutover import CutoverResult, SequenceMove
from migrations.retire import archives_names


def test_a_result_summary_names_the_outcome_the_freeze_and_each_step() -> None:
    result = CutoverResult(
        "orders",
        "cutover",
        "aborted",
        "canary",
        "canary",
        freeze_ms=412.5,
        max_freeze_ms=400,
        steps_ms={"freeze": 3.2, "acknowledged": 409.1},
        failed_step="acknowledged",
        message="Aborted at step 'acknowledged'.",
    )
    assert result.summary() == (
        "cutover orders: aborted, canary -> canary, writes frozen 412.5 ms (bound 400 ms)\n"
        "steps: freeze 3.2 ms, acknowledged 409.1 ms\nAborted at step 'acknowledged'."
    )
    assert not result.completed


def test_a_sequence_move_prints_the_statement_it_runs() -> None:
    move = SequenceMove("shop_order", "public.shop_order_id_seq", other_max=1200, value=1_001_200)
    assert move.statement() == (
        "SELECT setval('public.shop_order_id_seq', 1001200)  -- shop_order: the other max 1200"
    )


def test_archived_tables_get_a_dated_name_within_postgres_63_bytes() -> None:
    long = "t" * 70
    names = archives_names(["shop_order", long], "20261130211500")
    assert names["shop_order"] == "shop_order_20261130211500"
    assert len(names[long]) == 63 and names[long].endswith("_20261130211500")
