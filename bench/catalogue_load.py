"""Pieces the benchmarks of the catalogue page share (bench/proxy.py, bench/observability.py): the
seeded catalogue and one wrk run read into figures. Import after Django is set up."""

from __future__ import annotations

import re
import subprocess
from decimal import Decimal

from legacy.shop.models import Material, Product, ProductOption


def seed_catalogue() -> None:
    """50 active products with two options each: a page of the real catalogue API."""
    material, _ = Material.objects.get_or_create(
        code="BENCH-MAT", defaults={"name": "Oak", "unit_cost": Decimal("9")}
    )
    for n in range(50):
        product, _ = Product.objects.get_or_create(
            sku=f"BENCH-{n:04d}",
            defaults={
                "name": f"Bench product {n}",
                "description": "A seeded product " * 4,
                "labour_minutes": 30 + n,
            },
        )
        for code in ("lacquer", "oiled"):
            ProductOption.objects.get_or_create(
                product=product,
                code=code,
                defaults={
                    "name": code.title(),
                    "extra_material": material,
                    "extra_material_quantity": Decimal("0.5"),
                },
            )


def wrk(wrk_bin: str, url: str, *, connections: int, seconds: int) -> dict[str, float]:
    result = subprocess.run(
        [
            wrk_bin,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-H",
            "Authorization: Bearer bench-1",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    text = result.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    requests_done = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    percentiles = {}
    for label, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        percentiles[label] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return {
        "rps": rps,
        "requests": requests_done,
        "p50_ms": percentiles["50"],
        "p99_ms": percentiles["99"],
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
    }
