"""Purchase bodies as a POS would send them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

_purchase_ids = itertools.count(1)


def purchase_body(
    member_id: str, *lines: tuple[str, int, str, str], days_ago: float = 0, **extra
) -> dict:
    """lines: (sku, quantity, unit_price, category)."""
    lines = lines or (("SKU-1", 1, "100.00", "general"),)
    total = sum(int(q) * float(p) for _, q, p, _ in lines)
    body = {
        "external_id": f"POS-{next(_purchase_ids)}",
        "member_id": member_id,
        "occurred_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        "store": "Store 12",
        "currency": "CNY",
        "lines": [
            {"sku": sku, "quantity": q, "unit_price": p, "category": c} for sku, q, p, c in lines
        ],
        "total": f"{total:.2f}",
    }
    body.update(extra)
    return body
