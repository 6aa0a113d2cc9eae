"""Password hashing shared by staff and member sign-in: argon2id, checked off the event loop.

`UNKNOWN_ACCOUNT_HASH` is checked when no account matches, so an unknown name and a wrong
password cost the same time and do not tell an attacker which accounts exist."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
password_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
UNKNOWN_ACCOUNT_HASH = password_hasher.hash("timing-equaliser-for-unknown-users")


async def password_matches(password_hash: str, password: str) -> bool:
    """argon2 costs tens of milliseconds of CPU: it runs off the event loop, so sign-ins (and
    attacks on them) do not stall every other request."""
    return await asyncio.to_thread(_verify, password_hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return password_hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
