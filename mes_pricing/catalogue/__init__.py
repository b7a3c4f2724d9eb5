"""The pricing service's projection of the catalogue's cost data (materials, bills of materials,
labour minutes, option costs), fed by the catalogue's events; it never reads the shop's database."""
