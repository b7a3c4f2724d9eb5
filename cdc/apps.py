from django.apps import AppConfig


class CdcConfig(AppConfig):
    name = "cdc"
    label = "cdc"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from cdc.wal_trace import wal_trace_install

        # Writes under a sampled span leave their trace context in the WAL (cdc/wal_trace.py);
        # the receiver adds nothing when tracing is off.
        connection_created.connect(wal_trace_install, dispatch_uid="cdc.wal_trace")
