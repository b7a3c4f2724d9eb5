"""ASGI entry point of the proxy process (`uvicorn strangler.proxy.asgi:application`)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SERVICE", "proxy")

import django

django.setup()

from django.conf import settings  # noqa: E402

if settings.SERVICE != "proxy":
    # Its routes, apps and database would be another process's: /_strangler/ would answer 404.
    raise RuntimeError(
        f"strangler.proxy.asgi runs the proxy process: start it with SERVICE=proxy (or unset), "
        f"not SERVICE={settings.SERVICE}."
    )

from django.core.asgi import get_asgi_application  # noqa: E402

from strangler.proxy.app import ProxyApp  # noqa: E402

application = ProxyApp(django_app=get_asgi_application())
