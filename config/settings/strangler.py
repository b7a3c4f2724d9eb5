"""Settings of the strangler proxy and its control plane."""

from config.settings.base import BASE_DIR, MAX_REQUEST_BODY_BYTES
from config.settings.env import env

# Bodies above this are refused with 413 by the proxy (also when they arrive chunked).
STRANGLER_MAX_BODY_BYTES = env.int("STRANGLER_MAX_BODY_BYTES", default=MAX_REQUEST_BODY_BYTES)
STRANGLER_CONNECT_TIMEOUT = env.float("STRANGLER_CONNECT_TIMEOUT", default=1.0)
# Time a backend has to send its response headers.
STRANGLER_READ_TIMEOUT = env.float("STRANGLER_READ_TIMEOUT", default=30.0)
# Key that signs tester overrides (X-Strangler-Backend / strangler_backend cookie); empty: no override
# is honoured. Issue a token with strangler.proxy.overrides.override_token_issue.
STRANGLER_OVERRIDE_SECRET = env.str("STRANGLER_OVERRIDE_SECRET", default="")
# Read-your-writes pins kept per proxy process; beyond this the least recently written are dropped.
STRANGLER_MAX_PINS = env.int("STRANGLER_MAX_PINS", default=100_000)
# A client has this long to send a request's headers, and then this long to send its body; after that
# the proxy answers 408 and closes the connection (slow or stalled clients cannot hold it open).
STRANGLER_HEADER_TIMEOUT = env.float("STRANGLER_HEADER_TIMEOUT", default=10.0)
STRANGLER_BODY_TIMEOUT = env.float("STRANGLER_BODY_TIMEOUT", default=30.0)
# A request head with more headers, or more bytes of header names and values, is answered 431 by
# the proxy before anything is forwarded. The count leaves room for the few the proxy adds (request
# id, trace context, X-Forwarded-*, Host) under the monolith's granian, which refuses more than 100.
STRANGLER_MAX_HEADERS = env.int("STRANGLER_MAX_HEADERS", default=90)
STRANGLER_MAX_HEADER_BYTES = env.int("STRANGLER_MAX_HEADER_BYTES", default=64 * 1024)
# How often a proxy checks the control database's routing version. A change also reaches proxies at
# once through a NOTIFY (strangler_routing channel); polling is the fallback when that is lost.
STRANGLER_POLL_INTERVAL = env.float("STRANGLER_POLL_INTERVAL", default=0.2)
# Each proxy reports itself (routing version, write-freeze acknowledgements) this often ...
STRANGLER_HEARTBEAT_INTERVAL = env.float("STRANGLER_HEARTBEAT_INTERVAL", default=1.0)
# ... and a cutover waits for the acknowledgement of every proxy heard from within this many seconds.
STRANGLER_PROXY_SEEN_SECONDS = env.float("STRANGLER_PROXY_SEEN_SECONDS", default=3.0)
# Length of one canary analysis interval (automatic rollback counts intervals past the bounds).
STRANGLER_ANALYSIS_INTERVAL = env.float("STRANGLER_ANALYSIS_INTERVAL", default=10.0)
STRANGLER_HEALTH_INTERVAL = env.float("STRANGLER_HEALTH_INTERVAL", default=2.0)
# Callers allowed on internal routes: these networks, or a request carrying the internal token.
STRANGLER_INTERNAL_NETWORKS = env.list("STRANGLER_INTERNAL_NETWORKS", default=[])
STRANGLER_INTERNAL_TOKEN = env.str("STRANGLER_INTERNAL_TOKEN", default="")
# Paths every backend serves to its Prometheus scraper only (which reads each process directly): the
# proxy answers them, on any route and backend, to internal callers only, like its own /_strangler/metrics.
STRANGLER_SCRAPER_ONLY_PATHS = env.list("STRANGLER_SCRAPER_ONLY_PATHS", default=["/metrics"])
# Load balancers in front of the proxy whose X-Forwarded-For is kept (appended to); anyone else's is
# replaced by the peer address.
STRANGLER_TRUSTED_PROXIES = env.list("STRANGLER_TRUSTED_PROXIES", default=[])
# One JSON log line per request (errors are always logged).
STRANGLER_ACCESS_LOG = env.bool("STRANGLER_ACCESS_LOG", default=False)
STRANGLER_SHADOW_MAX_BODY_BYTES = env.int("STRANGLER_SHADOW_MAX_BODY_BYTES", default=1024 * 1024)
STRANGLER_SHADOW_MAX_IN_FLIGHT = env.int("STRANGLER_SHADOW_MAX_IN_FLIGHT", default=16)
# The migration plan `manage.py strangler load-plan` (and validate-plan) reads when given no path: it
# lives with the system it migrates.
STRANGLER_PLAN_FILE = env.path(
    "STRANGLER_PLAN_FILE", default=str(BASE_DIR / "legacy" / "migration_plan.yaml")
)
# A Prometheus server scraping every process (e.g. http://127.0.0.1:9090): the ops page reads the
# sync and CDC lag that other processes export from it. Empty: those figures come from the control
# database only (docs/observability-ops-page.md).
STRANGLER_PROMETHEUS_URL = env.str("STRANGLER_PROMETHEUS_URL", default="")
