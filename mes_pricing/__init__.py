"""The extracted pricing service: the only public MES API, on its own database."""
