"""The staff ops page (/_strangler/ops/): a server-rendered overview that works without JavaScript;
its script polls the staff API's ops endpoint and draws the charts."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from strangler.ops_overview import ops_overview

POLL_SECONDS = 2


@staff_member_required(login_url="admin:login")
def ops_page(request: HttpRequest) -> HttpResponse:
    overview = ops_overview()
    return render(
        request,
        "strangler/ops_page.html",
        {
            "overview": overview,
            "data_url": reverse("strangler-ops-data"),
            "poll_ms": POLL_SECONDS * 1000,
        },
    )
