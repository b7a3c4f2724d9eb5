"""What the CDC engines keep in the control database besides Debezium's offsets: the last event
each engine published (for `manage.py cdc status` and lag figures) and the dead letters."""

from django.db import models


class EngineState(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slot_name = models.CharField(max_length=63)
    last_event_id = models.CharField(max_length=64, blank=True, default="")
    last_event_type = models.CharField(max_length=120, blank=True, default="")
    last_event_subject = models.CharField(max_length=200, blank=True, default="")
    # The source position (WAL LSN / transaction id) of the last published change.
    last_position = models.CharField(max_length=64, blank=True, default="")
    last_committed_at = models.DateTimeField(null=True, blank=True)
    last_published_at = models.DateTimeField(null=True, blank=True)
    events_published = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    restarts = models.IntegerField(default=0)

    class Meta:
        db_table = "cdc_engine_state"

    def __str__(self) -> str:
        return self.name


class CaptureDeadLetter(models.Model):
    """A captured change the engine could not turn into valid events: kept with the raw record and
    the reason, so that the stream goes on and the change can be replayed once the code is fixed
    (`manage.py cdc dead-letters`). Replayed letters are marked, never deleted."""

    # Same change, same letter: a batch read again after a crash finds its letters already stored.
    letter_key = models.CharField(max_length=64, unique=True)
    capture = models.CharField(max_length=200)
    engine = models.CharField(max_length=100)
    # The source position (WAL LSN / transaction id) of the change.
    position = models.CharField(max_length=64, blank=True, default="")
    # The cdc.records.CapturedRecord as JSON: the Debezium envelope (or outbox row) as it was read.
    record = models.JSONField()
    reason = models.CharField(max_length=40)
    error_type = models.CharField(max_length=200)
    error = models.TextField()
    created_at = models.DateTimeField(db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)
    replay_count = models.IntegerField(default=0)
    replayed_event_ids = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "cdc_dead_letter"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"dead letter {self.pk} of {self.capture} ({self.reason})"
