"""Members through the API, and where a member's data can be found in the database."""

from __future__ import annotations

from httpx import AsyncClient

from loyalty.infrastructure import db


async def enrol(client: AsyncClient, headers: dict, name: str = "Chen Jie", **fields) -> dict:
    """Enrol a member through the API (201) as `headers`; the member."""
    response = await client.post("/api/v1/members", json={"name": name, **fields}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def merge(
    client: AsyncClient, admin: dict[str, str], survivor_id: str, duplicate_id: str
) -> dict:
    """Merge the duplicate into the survivor through the API (200); the merge's answer."""
    response = await client.post(
        f"/api/v1/members/{survivor_id}/merge",
        json={"duplicate_id": duplicate_id, "reason": "same person, two sign-ups"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    return response.json()


async def text_columns() -> list[tuple[str, str]]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            """
            SELECT table_name, column_name FROM information_schema.columns
            WHERE table_schema = 'public' AND data_type IN
                ('text', 'character varying', 'jsonb', 'json', 'ARRAY')
              AND table_name NOT LIKE 'seeded_%' AND table_name <> 'migration'
            """
        )
    return [(row["table_name"], row["column_name"]) for row in rows]


async def find(value: str) -> list[str]:
    """Every table.column whose text holds the value (any case)."""
    found = []
    async with db.connection() as conn:
        for table, column in await text_columns():
            hit = await conn.fetchval(
                f'SELECT 1 FROM "{table}" WHERE "{column}"::text ILIKE $1 LIMIT 1', f"%{value}%"
            )
            if hit:
                found.append(f"{table}.{column}")
    return found
