"""The catalogue projection's processes, for the lead to merge into mes_pricing/processes.py:

- "catalogue-consumer": `manage.py consume pricing-catalogue`, with SERVICE=mes_pricing in its
  environment (it writes the pricing database);
- "catalogue-capture": `manage.py cdc run --capture catalogue`, with SERVICE=cdc in its environment
  (the CDC process family, like the legacy order capture: it reads the legacy database's catalogue
  tables through its own replication slot and publishes their events; on its first start it
  announces every existing row from Debezium's initial snapshot). Run `cdc setup --capture
  catalogue` once before, or let `run` create the slot (it does unless --no-setup).
"""

from __future__ import annotations

from ops.process_group import manage_command

CONSUMER_GROUP = "pricing-catalogue"
CAPTURE = "catalogue"
# The SERVICE each process runs under.
PROCESS_SERVICES = {"catalogue-consumer": "mes_pricing", "catalogue-capture": "cdc"}


def catalogue_process_commands() -> dict[str, list[str]]:
    return {
        "catalogue-consumer": manage_command("consume", CONSUMER_GROUP),
        "catalogue-capture": manage_command("cdc", "run", "--capture", CAPTURE),
    }
