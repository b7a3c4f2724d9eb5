"""The one django-environ reader every settings module shares."""

import environ

env = environ.Env()
