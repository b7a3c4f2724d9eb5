"""The deprecated external read API of production orders, served by the public side (mes_pricing)
from a read-only projection fed by production events, until its sunset."""
