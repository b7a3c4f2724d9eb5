"""Settings of change data capture: the Debezium engine, event transports, consumers and outbox."""
