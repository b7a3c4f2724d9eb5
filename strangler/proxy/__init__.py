"""The data plane: an ASGI reverse proxy that routes each request to legacy or the new service."""
