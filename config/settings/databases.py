"""Databases: one per service on one PostgreSQL server by default, each from its own URL.

The SERVICE's own database is "default"; every other database is reachable under its own alias
so that toolkit processes (CDC, backfill, verification) can read one and write another.
"""

from config.processes import PROCESSES
from config.settings.base import SERVICE
from config.settings.env import env

PG_HOST = env.str("PGHOST", default="127.0.0.1")
PG_PORT = env.int("PGPORT", default=5432)
PG_USER = env.str("PGUSER", default="postgres")
# Lets two checkouts (or two developers) share one server without sharing databases.
DB_NAME_PREFIX = env.str("DB_NAME_PREFIX", default="")

DATABASE_NAMES = ("legacy", "shop", "crm", "pricing", "production", "control")
SERVICE_DATABASE = PROCESSES[SERVICE].database


def _database(name: str) -> dict:
    default_url = f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{DB_NAME_PREFIX}{name}"
    config = env.db_url(f"{name.upper()}_DATABASE_URL", default=default_url)
    config["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
    config["CONN_HEALTH_CHECKS"] = True
    config.setdefault("OPTIONS", {})
    # Every write this process makes carries its SERVICE as `migration.writer`: the data-migration
    # toolkit's stray-write check (migrations/stray_writes.py) reports writes to a slice's new tables
    # that came from neither the owning service nor the sync (a psql session, another process).
    config["OPTIONS"].setdefault("options", f"-c migration.writer={SERVICE}")
    config["TEST"] = {"NAME": f"test_{config['NAME']}"}
    return config


DATABASES = {"default": _database(SERVICE_DATABASE)}
for _name in DATABASE_NAMES:
    if _name != SERVICE_DATABASE:
        DATABASES[_name] = _database(_name)

DATABASE_ROUTERS = ["config.routers.ServiceDatabaseRouter"]

# Which logical database holds each app's tables. The framework apps (auth, contenttypes, sessions,
# admin, authtoken) are in none of them: every database has its own, and a process uses its own
# database's (the proxy's staff and sessions are in `control`).
APP_DATABASES = {
    "legacy_shop": "legacy",
    "legacy_crm": "legacy",
    "legacy_mes": "legacy",
    "shop_app": "shop",
    "crm_app": "crm",
    "mes_pricing": "pricing",
    "mes_pricing_catalogue": "pricing",
    "mes_public_production": "pricing",
    "mes_production": "production",
    "strangler": "control",
    "cdc": "control",
    "data_migrations": "control",
}
