"""Operations shared by every process: request context, errors, health, metrics, database setup."""
