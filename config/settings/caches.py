"""The shared cache (Redis through django-redis): counters every process of a service must agree
on, such as API rate limits and failed API-key attempts, which a per-process cache would split."""

from config.settings.databases import DATABASES
from config.settings.env import env

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        # One Redis serves every checkout and test run on a machine: keys are kept apart by the
        # name of the process's own database (a test run's children get the test databases).
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default=DATABASES["default"]["NAME"]),
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT_SECONDS", default=0.5),
            "SOCKET_TIMEOUT": env.float("REDIS_TIMEOUT_SECONDS", default=0.5),
            # Redis down must not take the APIs down with it: counters then read as zero (limits
            # are off until it is back) and each failure is logged.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "config.caches"
