"""One URLconf per SERVICE; each includes the operational routes."""
