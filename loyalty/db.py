"""The one Piccolo engine, pointed at the configured (or embedded) PostgreSQL."""

from __future__ import annotations

import os

from piccolo.engine.postgres import PostgresEngine

engine = PostgresEngine(config={"dsn": os.environ.get("LOYALTY_DATABASE_URL", "")})


def configure_engine(database_url: str) -> None:
    """Point the engine at a database; call before the pool starts."""
    engine.config = {"dsn": database_url}


async def start_pool(max_size: int = 20) -> None:
    await engine.start_connection_pool(min_size=1, max_size=max_size, command_timeout=30)


async def close_pool() -> None:
    await engine.close_connection_pool()
