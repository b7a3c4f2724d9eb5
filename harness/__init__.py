"""What the integration tests, the benchmarks and the demo share to run the system for real:
waiting for a condition, a RabbitMQ vhost of one's own, a Tansu broker, a CDC engine on a slot of
its own, databases of one's own, percentiles, the Django bootstrap of a script and the proxy's
test plans. It is toolkit: it imports `ops` and `cdc`, never a domain package."""
