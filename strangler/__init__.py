"""The strangler proxy (data plane) and its control plane: routes, cohorts, shadowing, cutovers."""
