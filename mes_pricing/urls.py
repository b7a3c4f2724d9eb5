"""The pricing service's public routes: quotes on the legacy contract and on /pricing/api/v1/, and
the schema of both."""

from django.urls import path

from mes_pricing import apis

quote_patterns = [
    path("mes/api/quotes/", apis.QuoteApi.as_view(), name="pricing-legacy-quotes"),
    path("pricing/api/v1/quotes/", apis.QuoteV1Api.as_view(), name="pricing-v1-quotes"),
]

urlpatterns = [
    *quote_patterns,
    path(
        "pricing/api/v1/schema/",
        apis.PricingSchemaApi.as_view(urlconf=quote_patterns),
        name="pricing-v1-schema",
    ),
]
