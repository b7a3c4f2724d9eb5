"""The shop's internal API (/shop/internal/): what other services of the company (the CRM) read of
the shop's customers and orders and the staff decisions they ask for, over HTTP instead of the
shop's database. Callers authenticate as a service ("Authorization: Service <SERVICE_API_TOKEN>").
"""
