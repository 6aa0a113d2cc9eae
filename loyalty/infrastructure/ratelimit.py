"""Fixed-window counters in Redis, for limits that need a key from the request body, and the
one guard every sign-in (staff password, member password, member one-time code) goes
through."""

from __future__ import annotations

from redis.asyncio import Redis

KNOWN_ADDRESS_DAYS = 90  # addresses an account signed in from recently are trusted

# Checks every counter against its limit and, only if all are under, counts one more on each,
# in one step: concurrent requests cannot all slip under a limit between a check and a count.
# KEYS: the counters; ARGV: the window in seconds, then each counter's limit. Returns the
# seconds until the first refusing counter opens again, or 0 when the attempt was counted.
_TAKE = """
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then ttl = 1 end
    if ttl > wait then wait = ttl end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[1]) end
end
return 0
"""

# Gives one counted attempt back (a success), never below zero or onto an expired counter.
_GIVE_BACK = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


async def take(redis: Redis, limits: list[tuple[str, int]], window_seconds: int) -> int:
    """Count one attempt on every `(key, limit)` if all are under their limit: returns 0.
    Otherwise nothing is counted and the answer is the seconds to wait (at least 1)."""
    if not limits:
        return 0
    keys = [key for key, _ in limits]
    return int(
        await redis.eval(_TAKE, len(keys), *keys, window_seconds, *[limit for _, limit in limits])
    )


async def reset(redis: Redis, key: str) -> None:
    await redis.delete(key)


class SignInAttempt:
    """One guess at a password or code, under a per-account and a per-address limit.

    The guess is counted before the secret is checked, so past a limit nothing is hashed or
    compared at all, and concurrent guesses cannot overshoot the limit. An account under
    attack is locked for new addresses only: an address the account signed in from in the
    last 90 days skips the account's counter (not the address's), so the owner is not locked
    out by someone else's guessing. A success gives the address its attempt back, clears the
    account's counter (when it came from a new address) and remembers the address.
    `known_key=None` turns the owner's exemption off (codes that are not sign-ins).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        client: str,
        account_key: str,
        address_key: str,
        known_key: str | None,
        account_limit: int,
        address_limit: int,
        window_seconds: int,
    ) -> None:
        self.redis = redis
        self.client = client
        self.account_key = account_key
        self.address_key = address_key
        self.known_key = known_key
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window_seconds = window_seconds
        self.known = False

    async def begin(self) -> int:
        """0 when the guess may be checked (it is now counted); else the seconds to wait."""
        if self.known_key is not None:
            self.known = bool(await self.redis.sismember(self.known_key, self.client))
        limits = [(self.address_key, self.address_limit)]
        if not self.known:
            limits.append((self.account_key, self.account_limit))
        return await take(self.redis, limits, self.window_seconds)

    async def succeeded(self) -> None:
        await self.redis.eval(_GIVE_BACK, 1, self.address_key)
        if not self.known:
            await reset(self.redis, self.account_key)
        if self.known_key is not None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(self.known_key, self.client)
                pipe.expire(self.known_key, KNOWN_ADDRESS_DAYS * 86400)
                await pipe.execute()
