"""Legacy CRM: staff API over customers and orders, and the polling orchestrator towards the MES."""
