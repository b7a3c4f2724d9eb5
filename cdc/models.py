"""What the CDC engines remember in the control database besides Debezium's offsets: the last
event each engine published, for `manage.py cdc status` and lag figures."""

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
