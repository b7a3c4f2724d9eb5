"""Control-plane state of the strangler proxy: backends, slices, routes, audit log, shadow results.

Every change an operator makes bumps `RoutingVersion`, which proxy processes poll to know when to
reload their in-memory routing table.
"""

from __future__ import annotations

from django.db import models


class Phase(models.TextChoices):
    LEGACY = "legacy"
    SYNCING = "syncing"
    SHADOW = "shadow"
    CANARY = "canary"
    LIVE = "live"
    RETIRED = "retired"


# Phases in the order a slice moves through them (members compare equal to their stored values).
PHASE_ORDER: list[Phase] = list(Phase)


class Exposure(models.TextChoices):
    PUBLIC = "public"
    INTERNAL = "internal"


class Backend(models.Model):
    """A service that answers requests: the legacy monolith or an extracted service."""

    name = models.SlugField(max_length=64, unique=True)
    base_urls = models.JSONField(
        help_text="One or more http://host:port base URLs; requests spread over them."
    )
    health_path = models.CharField(max_length=200, default="/healthz")
    healthy = models.BooleanField(default=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "strangler_backend"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Slice(models.Model):
    """A unit of migration: routes taken over by one service, moving through phases."""

    name = models.SlugField(max_length=64, unique=True)
    legacy_backend = models.ForeignKey(Backend, on_delete=models.PROTECT, related_name="legacy_slices")
    new_backend = models.ForeignKey(Backend, on_delete=models.PROTECT, related_name="new_slices")
    phase = models.CharField(max_length=16, choices=Phase.choices, default=Phase.LEGACY)
    phase_changed_at = models.DateTimeField(auto_now_add=True)
    tables = models.JSONField(default=list, blank=True)
    # Slices that must be live (or retired) before this one's canary -> live cutover (from the plan).
    requires = models.JSONField(default=list, blank=True)
    # Percent of customers (0-100, two decimals) whose reads go to the new backend in canary.
    canary_weight = models.DecimalField(max_digits=5, decimal_places=2, default=0)
    shadow_enabled = models.BooleanField(default=False)
    shadow_sample_rate = models.FloatField(default=1.0)
    shadow_compare_headers = models.JSONField(default=list, blank=True)
    # {"/path/prefix": ["results.*.id", "*.created_at"]}: JSON paths whose values never count as diffs.
    shadow_ignore = models.JSONField(default=dict, blank=True)
    paused = models.BooleanField(default=False)
    # A customer who wrote is kept on the write's backend this long (longer than the sync lag bound).
    pin_after_write_seconds = models.FloatField(default=5.0)
    # Gates and automatic rollback bounds.
    max_sync_lag_seconds = models.FloatField(default=5.0)
    max_shadow_diff_rate = models.FloatField(default=0.01)
    min_shadow_requests = models.PositiveIntegerField(default=100)
    max_error_rate_delta = models.FloatField(default=0.02)
    max_p99_ratio = models.FloatField(default=2.0)
    p99_slack_ms = models.FloatField(default=20.0)
    rollback_intervals = models.PositiveIntegerField(default=3)
    min_interval_requests = models.PositiveIntegerField(default=20)
    soak_seconds = models.FloatField(default=86400.0)
    # Reported by the data-migration toolkit; the syncing -> shadow gate reads them.
    sync_lag_seconds = models.FloatField(null=True, blank=True)
    sync_verified_at = models.DateTimeField(null=True, blank=True)
    # Write freeze: writes to the slice's routes are held until this time (or a release).
    write_freeze_until = models.DateTimeField(null=True, blank=True)
    write_freeze_max_held = models.PositiveIntegerField(default=1000)

    class Meta:
        db_table = "strangler_slice"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Route(models.Model):
    """Requests matching a path prefix (or an anchored regex pattern) and methods belong to a slice."""

    slice = models.ForeignKey(Slice, on_delete=models.CASCADE, related_name="routes")
    name = models.SlugField(max_length=64)
    prefix = models.CharField(max_length=300, blank=True, default="")
    pattern = models.CharField(max_length=300, blank=True, default="")
    methods = models.JSONField(default=list, help_text="Upper-case HTTP methods; empty means all.")
    exposure = models.CharField(max_length=16, choices=Exposure.choices, default=Exposure.PUBLIC)
    read_only = models.BooleanField(
        default=False,
        help_text="Every method only reads: shadowed and canaried like GET, never held as a write.",
    )
    position = models.PositiveIntegerField(default=0)
    # From this moment on the proxy answers the route 410 Gone (a retired, deprecated API).
    sunset = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "strangler_route"
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["slice", "name"], name="strangler_route_unique_name")]

    def __str__(self) -> str:
        return f"{self.slice.name}/{self.name}"


class ControlSettings(models.Model):
    """The single row of plan-wide settings: the default backend and the routing version counter."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)
    default_backend = models.ForeignKey(Backend, null=True, blank=True, on_delete=models.SET_NULL)
    default_exposure = models.CharField(max_length=16, choices=Exposure.choices, default=Exposure.PUBLIC)
    plan_digest = models.CharField(max_length=64, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "strangler_control_settings"


class AuditEntry(models.Model):
    """One change to the control plane: who did what, when, from which state to which, and why."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    who = models.CharField(max_length=150)
    action = models.CharField(max_length=64)
    slice_name = models.CharField(max_length=64, blank=True, default="", db_index=True)
    from_state = models.JSONField(default=dict)
    to_state = models.JSONField(default=dict)
    why = models.TextField(blank=True, default="")
    gate = models.JSONField(
        default=dict, help_text="Figures of the gate that allowed (or forced) the change."
    )

    class Meta:
        db_table = "strangler_audit_entry"
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.who} {self.action} {self.slice_name}"


class ShadowRouteStats(models.Model):
    """Running totals of shadow comparisons of one route, summed over all proxy processes."""

    slice_name = models.CharField(max_length=64)
    route_name = models.CharField(max_length=64)
    compared = models.BigIntegerField(default=0)
    differing = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "strangler_shadow_route_stats"
        constraints = [
            models.UniqueConstraint(fields=["slice_name", "route_name"], name="strangler_shadow_stats_unique")
        ]


class ShadowSample(models.Model):
    """One differing pair of responses kept as evidence (the newest few per route are kept)."""

    at = models.DateTimeField(auto_now_add=True)
    slice_name = models.CharField(max_length=64)
    route_name = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.TextField()
    differences = models.JSONField(default=list)

    class Meta:
        db_table = "strangler_shadow_sample"
        ordering = ["-at", "-id"]


class ProxyInstance(models.Model):
    """One running proxy process as it last reported itself (about once a second): the routing version
    it routes with, and for each slice it holds frozen, the routing version in which it acknowledged
    the freeze (loaded it, and had no write to the slice in flight any more). A cutover waits for the
    acknowledgement of every proxy seen recently before it drains the slice."""

    identity = models.CharField(max_length=200, unique=True)
    routing_version = models.BigIntegerField(default=0)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)
    # {slice name: routing version}
    freeze_acks = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "strangler_proxy_instance"
        ordering = ["identity"]

    def __str__(self) -> str:
        return self.identity
