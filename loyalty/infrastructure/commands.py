"""What the command-line entry points share: running one coroutine with the database open."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from loyalty.infrastructure import db
from loyalty.settings import get_settings

T = TypeVar("T")


def run_with_db(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run one coroutine with the database pool open."""

    async def runner() -> T:
        db.configure_engine(get_settings().database_url or "")
        await db.start_pool(max_size=4)
        try:
            return await coro_factory()
        finally:
            await db.close_pool()

    return asyncio.run(runner())
