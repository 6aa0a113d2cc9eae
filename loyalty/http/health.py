"""Operational endpoints: health."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Request, Response, get

from loyalty.infrastructure.db import engine


class Health(msgspec.Struct):
    status: str
    database: str
    redis: str


async def _check(probe, limit: float = 2.0) -> str:
    try:
        await asyncio.wait_for(probe(), limit)
    except Exception as exc:  # any failure means "not reachable" to a load balancer
        return f"down: {type(exc).__name__}"
    return "ok"


@get("/health", summary="Database and Redis reachability", tags=["system"])
async def health(request: Request) -> Response[Health]:
    """200 when PostgreSQL and Redis both answer, 503 when either does not."""
    database, redis = await asyncio.gather(
        _check(lambda: engine.run_ddl("SELECT 1")),
        _check(request.app.state.redis.ping),
    )
    ok = database == "ok" and redis == "ok"
    return Response(
        Health(status="ok" if ok else "unavailable", database=database, redis=redis),
        status_code=200 if ok else 503,
    )
