"""ASGI entry point of the proxy process (`uvicorn strangler.proxy.asgi:application`)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SERVICE", "proxy")

import django

django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402

from strangler.proxy.app import ProxyApp  # noqa: E402

application = ProxyApp(django_app=get_asgi_application())
