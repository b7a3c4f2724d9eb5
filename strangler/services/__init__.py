"""Control-plane writes, one module per job: how a change is locked and audited (changes), the phase
machine with its gates (phases), plan application (plans), and what proxies and the data-migration
toolkit report (observations). Callers use the names below.
"""

from strangler.services.changes import OperationRefused, PlanChange
from strangler.services.observations import (
    ShadowResult,
    backend_health_record,
    proxy_gone_record,
    proxy_heartbeat_record,
    shadow_results_record,
    shadow_stats_reset,
    slice_report_sync,
)
from strangler.services.phases import (
    gate_check,
    slice_promote,
    slice_rollback,
    slice_set_paused,
    slice_set_shadow,
    slice_set_weight,
    write_freeze_release,
    write_freeze_start,
)
from strangler.services.plans import plan_apply

__all__ = [
    "OperationRefused",
    "PlanChange",
    "ShadowResult",
    "backend_health_record",
    "gate_check",
    "plan_apply",
    "proxy_gone_record",
    "proxy_heartbeat_record",
    "shadow_results_record",
    "shadow_stats_reset",
    "slice_promote",
    "slice_report_sync",
    "slice_rollback",
    "slice_set_paused",
    "slice_set_shadow",
    "slice_set_weight",
    "write_freeze_release",
    "write_freeze_start",
]
