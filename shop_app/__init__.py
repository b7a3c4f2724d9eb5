"""The extracted shop service, on its own database."""
