"""Fixed-window counters in Redis, for limits that need a key from the request body."""

from __future__ import annotations

from redis.asyncio import Redis


async def retry_after(redis: Redis, key: str, limit: int) -> int:
    """Seconds until `key` may be tried again (0 when under its limit)."""
    count = await redis.get(key)
    if count is None or int(count) < limit:
        return 0
    ttl = await redis.ttl(key)
    return max(int(ttl), 1)


async def record(redis: Redis, key: str, window_seconds: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.ttl(key)
        _, ttl = await pipe.execute()
    if ttl < 0:  # the first failure of a window starts its clock (EXPIRE NX needs Redis 7)
        await redis.expire(key, window_seconds)


async def reset(redis: Redis, key: str) -> None:
    await redis.delete(key)
