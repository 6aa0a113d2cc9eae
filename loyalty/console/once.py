"""A form that must do its work once however often it is sent (a double click, a reload):
its hidden key's first post does the work, and later posts of the same key get the first
answer back (kept a while in Redis), so a secret shown once is not lost to a second click."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import msgspec

from loyalty.errors import Conflict, InvalidInput
from loyalty.infrastructure.i18n import N_

T = TypeVar("T")
KEEP_SECONDS = 600
PENDING = b"pending"


def form_key(value: Any) -> str:
    """The form's hidden `key` (a UUID written into the page)."""
    try:
        return str(UUID(str(value)))
    except ValueError:
        raise InvalidInput(N_("reload the page and try again"), field="key") from None


async def once(
    redis: Any, scope: str, key: str, result_type: type[T], work: Callable[[], Awaitable[T]]
) -> T:
    """`work()` the first time `key` is posted in `scope`; its result again afterwards."""
    name = f"console:once:{scope}:{key}"
    if await redis.set(name, PENDING, nx=True, ex=KEEP_SECONDS):
        try:
            result = await work()
        except BaseException:
            await redis.delete(name)  # nothing was done: the form may be sent again
            raise
        await redis.set(name, msgspec.json.encode(result), ex=KEEP_SECONDS)
        return result
    for _ in range(100):  # the first post is still working: wait for its answer
        stored = await redis.get(name)
        if stored is None:
            break
        if stored != PENDING:
            return msgspec.json.decode(stored, type=result_type)
        await asyncio.sleep(0.05)
    raise Conflict(N_("this form was sent already; reload the page to see the result"))
