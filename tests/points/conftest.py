from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

_ids = itertools.count(1)


def purchase_body(member_id: str, *lines: tuple[str, int, str, str], days_ago: float = 0, **extra):
    """lines: (sku, quantity, unit_price, category)."""
    lines = lines or (("SKU-1", 1, "100.00", "general"),)
    total = sum(int(q) * float(p) for _, q, p, _ in lines)
    body = {
        "external_id": f"POS-{next(_ids)}",
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


@pytest.fixture
async def admin(bearer):
    return await bearer("admin")


@pytest.fixture
async def pos(client, admin):
    key = (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "POS", "scopes": ["purchases:write", "members:read", "members:write"]},
            headers=admin,
        )
    ).json()["key"]
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def member(client, admin):
    response = await client.post("/api/v1/members", json={"name": "Chen Jie"}, headers=admin)
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def balance_of(client, admin):
    async def get(member_id: str) -> dict:
        response = await client.get(f"/api/v1/members/{member_id}/points", headers=admin)
        assert response.status_code == 200, response.text
        return response.json()

    return get
