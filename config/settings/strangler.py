"""Settings of the strangler proxy and its control plane."""
