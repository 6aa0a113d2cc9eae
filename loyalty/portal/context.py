"""What the portal's handlers, pages and member API alike, take from a request for the
services that send or check a code."""

from __future__ import annotations

from typing import Any

from litestar import Request

from loyalty.http.middleware import client_address
from loyalty.settings import Settings


def code_context(request: Request, settings: Settings) -> dict[str, Any]:
    """Redis (codes and rate limits), the client address the limits count, and the
    settings: the keyword arguments of every portal service that sends or checks a code."""
    return {
        "redis": request.app.state.redis,
        "client": client_address(request),
        "settings": settings,
    }
