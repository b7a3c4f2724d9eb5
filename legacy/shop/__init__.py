"""Legacy shop: catalogue of configurable products, customers, orders and their status history."""
