"""Settings, one module per concern; every value can be set from the environment."""

from config.settings.base import *  # noqa: F403
from config.settings.caches import *  # noqa: F403
from config.settings.cdc import *  # noqa: F403
from config.settings.consumers import *  # noqa: F403
from config.settings.databases import *  # noqa: F403
from config.settings.domain import *  # noqa: F403
from config.settings.messaging import *  # noqa: F403
from config.settings.observability import *  # noqa: F403
from config.settings.strangler import *  # noqa: F403
