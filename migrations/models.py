"""The toolkit's records in the control database: one row per cutover, rollback or retire run, kept
as the history of who moved a slice's write ownership when, and how long writes were frozen."""

from __future__ import annotations

from django.db import models


class RunKind(models.TextChoices):
    CUTOVER = "cutover"
    ROLLBACK = "rollback"
    RETIRE = "retire"


class RunOutcome(models.TextChoices):
    RUNNING = "running"
    COMPLETED = "completed"  # the phase moved (flipped, rolled back, retired)
    ABORTED = "aborted"  # a bound or a check stopped it under the freeze; everything was undone
    REFUSED = "refused"  # a precondition failed before anything changed
    FAILED = "failed"  # an unexpected error; the message says what was undone
    DRY_RUN = "dry-run"


class CutoverRun(models.Model):
    slice_name = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    who = models.CharField(max_length=150)
    host = models.CharField(max_length=200, default="", blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    from_phase = models.CharField(max_length=16, default="", blank=True)
    to_phase = models.CharField(max_length=16, default="", blank=True)
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices, default=RunOutcome.RUNNING)
    # The step that ran over the bound or failed ("" when it completed).
    failed_step = models.CharField(max_length=32, default="", blank=True)
    message = models.TextField(default="", blank=True)
    max_freeze_ms = models.PositiveIntegerField(null=True, blank=True)
    # From the freeze's commit to the flip's (or the release's on an abort); None without a freeze.
    freeze_ms = models.FloatField(null=True, blank=True)
    # [[step, milliseconds], ...] in the order the steps ran (a jsonb object would not keep it).
    steps_ms = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        app_label = "data_migrations"
        db_table = "data_migrations_cutoverrun"
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.slice_name} by {self.who} at {self.started_at:%Y-%m-%d %H:%M}: {self.outcome}"
        )
