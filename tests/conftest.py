"""Test fixtures: real PostgreSQL and Redis (embedded, or from LOYALTY_DATABASE_URL /
LOYALTY_REDIS_URL), migrations applied once, a clean state for every test, HTTP through
httpx.ASGITransport in the test's own event loop."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from redis.asyncio import Redis

from loyalty.infrastructure import caches
from loyalty.infrastructure.embedded import EmbeddedPostgres, EmbeddedRedis

if TYPE_CHECKING:
    from tests.helpers.mail import Mailbox


@pytest.fixture(scope="session")
def backing_services() -> Iterator[dict[str, str]]:
    """URLs of a throw-away test database and Redis; embedded unless URLs are configured."""
    from tests.helpers.database import TEST_DATA_DIR, TEST_DATABASE, with_database

    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    postgres = None
    configured_db = os.environ.get("LOYALTY_DATABASE_URL")
    configured_redis = os.environ.get("LOYALTY_REDIS_URL")
    if configured_db:
        import asyncio

        import asyncpg

        async def recreate() -> None:
            admin = await asyncpg.connect(with_database(configured_db, "postgres"))
            await admin.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {TEST_DATABASE}")
            await admin.close()

        asyncio.run(recreate())
        database_url = with_database(configured_db, TEST_DATABASE)
    else:
        postgres = EmbeddedPostgres(TEST_DATA_DIR / "postgres")
        postgres.ensure_running()
        started.append(postgres)
        postgres.drop_database(TEST_DATABASE)
        database_url = postgres.ensure_database(TEST_DATABASE)
    if configured_redis:
        # Database 15 keeps test keys away from whatever else uses that Redis.
        redis_url = urlunsplit(urlsplit(configured_redis)._replace(path="/15"))
    else:
        redis = EmbeddedRedis(TEST_DATA_DIR / "redis")
        redis_url = redis.ensure_running()
        started.append(redis)
    os.environ.update(
        LOYALTY_DATABASE_URL=database_url,
        LOYALTY_REDIS_URL=redis_url,
        LOYALTY_SECRET_KEY=secrets.token_urlsafe(48),
        LOYALTY_DATA_DIR=str(TEST_DATA_DIR / "data"),
        LOYALTY_MODE="demo",
    )
    from loyalty.settings import reset_settings

    reset_settings()
    try:
        yield {"database_url": database_url, "redis_url": redis_url}
    finally:
        for service in reversed(started):
            if service.started_here:
                service.stop()


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Mailbox]:
    import socket

    from aiosmtpd.controller import Controller

    from tests.helpers.mail import Mailbox

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    os.environ.update(LOYALTY_SMTP_HOST="127.0.0.1", LOYALTY_SMTP_PORT=str(port))
    yield mailbox
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: Mailbox) -> Mailbox:
    smtp_server.messages.clear()
    return smtp_server


@pytest.fixture(scope="session")
def settings(backing_services: dict[str, str], smtp_server):
    from loyalty.settings import get_settings, reset_settings

    reset_settings()
    return get_settings()


# Configuration the migrations seed: restored to those defaults before every test.
CONFIG_TABLES = (
    "earning_rules",
    "tier_definitions",
    "tier_settings",
    "referral_settings",
    "rep_settings",
    "marketing_settings",
)


@pytest.fixture(scope="session")
async def migrated(settings) -> None:
    from loyalty.infrastructure.db import engine
    from loyalty.infrastructure.runtime import migrate

    await migrate(quiet=True)
    for table in CONFIG_TABLES:
        await engine.run_ddl(f"CREATE TABLE IF NOT EXISTS seeded_{table} AS SELECT * FROM {table}")


@pytest.fixture(scope="session")
async def app(migrated, settings) -> AsyncIterator:
    from loyalty.app import create_app, shutdown, startup

    # Litestar's own lifespan() runs in a task group that cannot span pytest's fixture tasks.
    application = create_app(settings)
    await startup(application)
    yield application
    await shutdown(application)


@pytest.fixture
async def served(app) -> AsyncIterator[str]:
    """The test app on a local port for browser tests (`tests.browser`)."""
    from tests.browser import serve

    async with serve(app) as base:
        yield base


@pytest.fixture(scope="session")
async def redis(app) -> Redis:
    return app.state.redis


def _forget_cached_configuration() -> None:
    caches.reset_all()


@pytest.fixture(autouse=True)
async def clean_state(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test that touches the database or Redis starts from empty tables and keys."""
    if "app" not in request.fixturenames and "migrated" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("app")
    from loyalty.infrastructure.db import engine
    from tests.helpers.database import all_tables

    await engine.run_ddl(f"TRUNCATE {', '.join(all_tables())} CASCADE")
    for table in CONFIG_TABLES:
        await engine.run_ddl(f"INSERT INTO {table} SELECT * FROM seeded_{table}")
    _forget_cached_configuration()
    await app.state.redis.flushdb()
    yield


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def make_client(app):
    """Extra independent clients (another browser, another address)."""
    clients: list[httpx.AsyncClient] = []

    def factory(address: str = "10.9.9.9") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40001))
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(c)
        return c

    yield factory


@pytest.fixture
async def make_staff(app):
    from loyalty.staff import schemas, service
    from tests.helpers.staff import TEST_PASSWORD

    async def factory(
        username: str, role: str = "admin", department: str | None = None
    ) -> schemas.Staff:
        created = await service.create_staff(
            schemas.StaffCreate(
                username=username, role=role, password=TEST_PASSWORD, department=department
            )
        )
        return created.staff

    return factory


@pytest.fixture
async def bearer(client, make_staff):
    """Authorization headers for a new staff user of the given role."""
    from tests.helpers.staff import TEST_PASSWORD

    async def factory(role: str = "admin", username: str | None = None, department=None) -> dict:
        username = username or f"{role.replace('_', '')}{secrets.token_hex(3)}"
        await make_staff(username, role, department)
        response = await client.post(
            "/api/v1/auth/tokens", json={"username": username, "password": TEST_PASSWORD}
        )
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    return factory


# --- members, purchases and integration keys -------------------------------------------


@pytest.fixture
async def admin(bearer):
    return await bearer("admin")


@pytest.fixture
async def pos(client, admin):
    key = (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "POS", "scopes": ["purchases:write", "members:read", "members:write"]},
            headers=admin,
        )
    ).json()["key"]
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def member(client, admin):
    response = await client.post("/api/v1/members", json={"name": "Chen Jie"}, headers=admin)
    assert response.status_code == 201
    return response.json()


@pytest.fixture
def balance_of(client, admin):
    async def get(member_id: str) -> dict:
        response = await client.get(f"/api/v1/members/{member_id}/points", headers=admin)
        assert response.status_code == 200, response.text
        return response.json()

    return get
