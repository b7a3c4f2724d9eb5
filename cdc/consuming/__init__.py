"""The consumer framework every service uses: consumer groups of typed handlers, an idempotent
inbox in the consumer's own database, retries, dead letters, ordered competing consumers."""
