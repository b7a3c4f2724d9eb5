"""The monolith as it runs today: shop, CRM and MES on one shared `legacy` database."""
