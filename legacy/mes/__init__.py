"""Legacy MES: price calculation and production orders, with one external API for both."""
