"""manage.py consume <group>: run one consumer group until SIGTERM."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cdc.consuming.groups import consumer_groups
from cdc.consuming.runner import TRANSPORTS, ConsumerSetupError, consumer_queues_declare, consumer_run


class Command(BaseCommand):
    help = (
        "Consume domain events for one consumer group (see --list) until SIGTERM or "
        "Ctrl-C; the message in hand is finished and acknowledged first. Each event is handled once "
        "through the group's inbox; failures are retried, then dead-lettered with their reason. "
        "Logs are JSON on stderr; Prometheus metrics are served on METRICS_PORT when set. Start "
        "several processes for the same group to share the load: each aggregate stays in order."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("group", nargs="?", help="the consumer group to run (see --list)")
        parser.add_argument(
            "--transport",
            choices=TRANSPORTS,
            default=settings.CONSUMER_TRANSPORT,
            help="broker to read from (default: CONSUMER_TRANSPORT, %(default)s)",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.METRICS_PORT,
            help="serve Prometheus metrics on this port (default: METRICS_PORT; 0 = off)",
        )
        parser.add_argument("--list", action="store_true", help="list the consumer groups and exit")
        parser.add_argument(
            "--declare-only",
            action="store_true",
            help="RabbitMQ: declare the group's queues and exit, consuming nothing; they keep every "
            "event for the group from now on, for when it starts",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for name, group in sorted(consumer_groups().items()):
                self.stdout.write(f"{name}  (SERVICE={group.service})  {' '.join(group.bindings())}")
            return
        if not options["group"]:
            raise CommandError(
                "Name the consumer group to run: `manage.py consume <group>` (--list shows them)."
            )
        try:
            if options["declare_only"]:
                topology = consumer_queues_declare(name=options["group"])
                self.stdout.write(f"declared {' '.join(topology.partition_queues)}")
                return
            consumer_run(
                name=options["group"], transport=options["transport"], metrics_port=options["metrics_port"]
            )
        except ConsumerSetupError as exc:
            raise CommandError(str(exc)) from exc
