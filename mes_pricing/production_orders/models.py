"""The projection's tables, on the pricing database."""
