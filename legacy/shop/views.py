"""Plain HTML pages of the shop, so that a person can browse, order and follow an order."""

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from legacy.mes.exceptions import PricingServiceUnavailable, PricingUnavailable
from legacy.shop import selectors
from legacy.shop.exceptions import OrderRefused
from legacy.shop.models import Order
from legacy.shop.services import OrderLineRequest, guest_order_place


class OrderForm(forms.Form):
    email = forms.EmailField()
    name = forms.CharField(max_length=200)
    sku = forms.CharField(max_length=32)
    quantity = forms.IntegerField(min_value=1, max_value=10_000)
    options = forms.CharField(max_length=300, required=False, help_text="option codes, comma separated")


def catalogue(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/catalogue.html", {"products": selectors.product_list()})


def order_form(request: HttpRequest) -> HttpResponse:
    form = OrderForm(request.POST or None, initial={"sku": request.GET.get("sku", "")})
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        options = [code.strip() for code in data["options"].split(",") if code.strip()]
        try:
            order = guest_order_place(
                email=data["email"],
                name=data["name"],
                lines=[OrderLineRequest(sku=data["sku"], quantity=data["quantity"], options=options)],
                at=timezone.now(),
            )
        except (OrderRefused, PricingUnavailable) as exc:
            form.add_error(None, exc.message)
        except PricingServiceUnavailable as exc:  # only with PRICING_API_URL set
            form.add_error(None, exc.message)
            status = 503
        else:
            return HttpResponseRedirect(reverse("shop-order-status", args=[order.public_id]))
    if form.errors and status == 200:
        status = 400
    return render(request, "shop/order_form.html", {"form": form}, status=status)


def order_status(request: HttpRequest, public_id: str) -> HttpResponse:
    order = get_object_or_404(
        Order.objects.prefetch_related("lines__product", "history"), public_id=public_id
    )
    return render(request, "shop/order_status.html", {"order": order})
