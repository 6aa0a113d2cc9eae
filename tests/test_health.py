"""/health answers 503 when Redis is down, and recovers when it returns."""

from __future__ import annotations

import httpx

from loyalty.infrastructure.embedded import EmbeddedRedis


async def test_health_is_503_while_redis_is_stopped(app, settings, tmp_path):
    from loyalty.app import create_app, redis_client

    own_redis = EmbeddedRedis(tmp_path / "redis")
    url = own_redis.ensure_running()
    try:
        outage_app = create_app(settings)
        outage_app.state.redis = redis_client(url)  # same database pool, its own Redis
        transport = httpx.ASGITransport(app=outage_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health")).status_code == 200
            own_redis.stop()
            response = await client.get("/health")
            assert response.status_code == 503
            assert response.json()["database"] == "ok"
            assert response.json()["redis"].startswith("down")
            own_redis.ensure_running()
            assert (await client.get("/health")).status_code == 200
        await outage_app.state.redis.aclose()
    finally:
        own_redis.stop()
