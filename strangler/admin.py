"""Django admin of the control plane. Phase, weight and shadow are read-only here: they change only
through the audited services (commands and API), so the admin cannot skip a gate or the audit log."""

from django.contrib import admin

from strangler.models import AuditEntry, Backend, Route, ShadowRouteStats, Slice


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
