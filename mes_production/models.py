"""Tables of the production service, on the production database."""
