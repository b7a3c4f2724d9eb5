"""The extracted production service: internal and event-driven, on its own database."""
