"""WSGI entry point: Django apps are served over WSGI (granian), the fast path on these machines."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
