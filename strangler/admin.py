"""Django admin of the control plane. Phase, weight and shadow are read-only here: they change only
through the audited services (commands and API), so the admin cannot skip a gate or the audit log."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from strangler import services
from strangler.models import AuditEntry, Backend, Route, ShadowRouteStats, Slice


def _slice_action(name: str, description: str, call: Callable[..., services.PlanChange]) -> Any:
    """An admin action that runs one audited service per selected slice and reports each outcome."""

    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Slice]) -> None:
        who = f"admin:{getattr(request.user, 'username', '?')}"
        for slice_ in queryset:
            try:
                change = call(name=slice_.name, who=who, why=f"admin action {name}")
            except services.OperationRefused as exc:
                modeladmin.message_user(request, str(exc), level=messages.ERROR)
            else:
                modeladmin.message_user(request, f"{slice_.name}: {change.from_state} -> {change.to_state}")

    action.__name__ = name
    return admin.action(description=description)(action)


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0
    readonly_fields = ["name", "prefix", "pattern", "methods", "exposure", "position"]
    can_delete = False


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    list_display = ["name", "base_urls", "health_path", "healthy", "checked_at"]


@admin.register(Slice)
class SliceAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "phase",
        "canary_weight",
        "shadow_enabled",
        "paused",
        "write_freeze_until",
        "legacy_backend",
        "new_backend",
    ]
    readonly_fields = [
        "phase",
        "phase_changed_at",
        "canary_weight",
        "shadow_enabled",
        "paused",
        "write_freeze_until",
        "sync_lag_seconds",
        "sync_verified_at",
    ]
    inlines = [RouteInline]
    actions = [
        _slice_action("promote", "Promote one phase (the gate must pass)", services.slice_promote),
        _slice_action("rollback", "Roll back one phase", services.slice_rollback),
        _slice_action("pause", "Pause", lambda **kw: services.slice_set_paused(paused=True, **kw)),
        _slice_action("resume", "Resume", lambda **kw: services.slice_set_paused(paused=False, **kw)),
        _slice_action("shadow_on", "Shadow on", lambda **kw: services.slice_set_shadow(enabled=True, **kw)),
        _slice_action(
            "shadow_off", "Shadow off", lambda **kw: services.slice_set_shadow(enabled=False, **kw)
        ),
    ]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "who", "action", "slice_name", "why"]
    list_filter = ["action", "slice_name"]
    readonly_fields = ["at", "who", "action", "slice_name", "from_state", "to_state", "why", "gate"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(ShadowRouteStats)
class ShadowRouteStatsAdmin(admin.ModelAdmin):
    list_display = ["slice_name", "route_name", "compared", "differing", "failed", "updated_at"]
