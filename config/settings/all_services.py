"""Settings of a process that works on every service's database at once: the test suite (it
creates and migrates every test database, and checks each service's tables directly).

Every process's apps are installed; SERVICE still picks the URLconf and the "default" database.
The router keeps each app's tables in its own database. A process that serves requests or runs a
command uses `config.settings`, which loads only its SERVICE's apps.
"""

from config.processes import all_apps
from config.settings import *  # noqa: F403

INSTALLED_APPS = all_apps()

# The extracted services mirror the legacy tables they take over in their own databases, names of
# tables, indexes and constraints included (the data-migration toolkit copies them as they are);
# the router keeps each in its database, so names shared across apps are intended here.
SILENCED_SYSTEM_CHECKS = ["models.W035", "models.E030", "models.E032"]
