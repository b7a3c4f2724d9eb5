"""The extracted CRM service, on its own database."""
