"""Fixtures of the marketing tests: a local SMS endpoint that messages go to."""

from __future__ import annotations

import asyncio

import pytest

from loyalty.infrastructure import messaging
from tests.helpers.marketing import SmsEndpoint


@pytest.fixture
async def sms(monkeypatch):
    endpoint = SmsEndpoint()
    server = await asyncio.start_server(endpoint.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(
        messaging, "sms_sender", lambda *a: messaging.WebhookSmsSender(f"http://127.0.0.1:{port}/")
    )
    yield endpoint
    server.close()


@pytest.fixture
async def author(bearer):
    """A marketer's headers: offers they write are approved by someone else (`admin`)."""
    return await bearer("marketing")
