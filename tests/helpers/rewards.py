"""Points, rewards and redemptions through the API."""

from __future__ import annotations

from httpx import AsyncClient, Response


async def give_points(
    client: AsyncClient, admin: dict[str, str], member_id: str, points: int, key: str = "seed"
) -> None:
    response = await client.post(
        f"/api/v1/members/{member_id}/points/adjustments",
        json={"points": points, "reason": "welcome gift", "idempotency_key": f"{member_id}{key}"},
        headers=admin,
    )
    assert response.status_code == 201, response.text


async def add_reward(client: AsyncClient, admin: dict[str, str], **fields) -> dict:
    body = {"name": "Tea set", "kind": "goods", "points_cost": 100, **fields}
    response = await client.post("/api/v1/rewards", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def redeem(
    client: AsyncClient,
    headers: dict[str, str],
    member_id: str,
    reward_id: str,
    key: str,
    quantity: int = 1,
) -> Response:
    return await client.post(
        f"/api/v1/members/{member_id}/redemptions",
        json={"reward_id": reward_id, "quantity": quantity, "idempotency_key": key},
        headers=headers,
    )
