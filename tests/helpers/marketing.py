"""Segments and offers through the API, and a local SMS endpoint."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from tests.helpers.purchases import purchase_body


async def enrol(client: AsyncClient, admin: dict[str, str], name: str, **fields) -> dict:
    response = await client.post("/api/v1/members", json={"name": name, **fields}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def buy(
    client: AsyncClient,
    pos: dict[str, str],
    member_id: str,
    amount: str = "100.00",
    days_ago: float = 0,
) -> None:
    body = purchase_body(member_id, ("SKU", 1, amount, "general"), days_ago=days_ago)
    response = await client.post("/api/v1/purchases", json=body, headers=pos)
    assert response.status_code == 201, response.text


async def count(client: AsyncClient, headers: dict[str, str], **filter_) -> int:
    response = await client.post("/api/v1/segments/count", json=filter_, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["members"]


class SmsEndpoint:
    """A tiny local HTTP server that records text messages (and can refuse them)."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.fail = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
        body = await reader.readexactly(length)
        if self.fail:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        else:
            self.received.append(json.loads(body))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()


def consenting(channels: list[str], granted: list[str]) -> dict:
    return {
        "channels": channels,
        "consents": [{"channel": c, "granted": True} for c in granted],
    }


async def make_offer(client: AsyncClient, headers: dict[str, str], **fields) -> dict:
    at = datetime.now(UTC)
    body = {
        "title_en": "Autumn tea week",
        "title_zh": "秋茶周",
        "body_en": "Double points on tea.",
        "body_zh": "茶叶双倍积分。",
        "valid_from": (at - timedelta(days=1)).isoformat(),
        "valid_until": (at + timedelta(days=7)).isoformat(),
        **fields,
    }
    response = await client.post("/api/v1/offers", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def approve(client: AsyncClient, headers: dict[str, str], offer_id: str) -> None:
    response = await client.post(f"/api/v1/offers/{offer_id}/approve", headers=headers)
    assert response.status_code == 200, response.text


async def results(client: AsyncClient, headers: dict[str, str], offer_id: str) -> dict:
    response = await client.get(f"/api/v1/offers/{offer_id}/results", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()
