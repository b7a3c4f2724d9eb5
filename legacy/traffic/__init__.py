"""The traffic generator: customer, staff and external MES API load at an open-loop rate against a
base URL, with per-route counts, errors and latency percentiles (`manage.py traffic`)."""
