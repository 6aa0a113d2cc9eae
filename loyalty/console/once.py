"""A form that must do its work once however often it is sent (a double click, a reload,
two tabs): the page writes a fresh hidden key (`new_key`); the first post of that key does
the work, and later posts of the same key get the first one's result back (kept a while in
Redis, per staff user), so nothing is done twice and a secret shown once is not lost to a
second click. A post whose work fails leaves nothing behind: the corrected form may be sent
with the same key."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput
from loyalty.infrastructure.i18n import N_

T = TypeVar("T")
KEEP_SECONDS = 24 * 3600
WAIT_SECONDS = 5.0
PENDING = b"pending"
_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def new_key() -> str:
    """The hidden key of a form that must act once."""
    return secrets.token_urlsafe(16)


def form_key(value: Any, field: str = "form_key") -> str:
    """The key a form posted back; none or a forged one is that field's problem."""
    key = str(value or "")
    if not _KEY.match(key):
        raise InvalidInput(N_("reload the page and try again"), field=field)
    return key


async def once(
    request: Request,
    principal: Principal,
    scope: str,
    key: str,
    result_type: type[T],
    work: Callable[[], Awaitable[T]],
) -> T:
    """`work()` the first time `principal` posts `key` in `scope`; its result afterwards."""
    redis = request.app.state.redis
    name = f"console:once:{principal.id}:{scope}:{key}"
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while True:
        if await redis.set(name, PENDING, nx=True, ex=KEEP_SECONDS):
            try:
                result = await work()
            except BaseException:
                await redis.delete(name)
                raise
            await redis.set(name, msgspec.json.encode(result), ex=KEEP_SECONDS)
            return result
        stored = await redis.get(name)
        if stored is not None and stored != PENDING:
            return msgspec.json.decode(stored, type=result_type)
        # The first post is still working (or just failed and let go of the key).
        if asyncio.get_running_loop().time() > deadline:
            raise Conflict(N_("this form was sent already; reload the page to see the result"))
        await asyncio.sleep(0.05)
