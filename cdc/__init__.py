"""Change data capture on the shared database: Debezium engine, event translation, publishers."""
