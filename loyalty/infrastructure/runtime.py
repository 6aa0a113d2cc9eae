"""Resolve where PostgreSQL and Redis are: configured URLs, or embedded servers in the data folder."""

from __future__ import annotations

import contextlib
import gc
import io
import os
from dataclasses import dataclass, field

import click

from loyalty.infrastructure import db
from loyalty.infrastructure.embedded import EmbeddedPostgres, EmbeddedRedis
from loyalty.settings import Settings, get_settings, reset_settings

DATABASE_NAME = "loyalty"
# New objects between collections of the youngest generation (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000


def collect_garbage_less_often() -> None:
    """For the web and job processes. A batch of a thousand purchases makes tens of thousands
    of short-lived objects: at Python's default thresholds the cycle collector ran 2,300
    times in 75 batches (18 of them full collections) and took 22% of the web process's
    CPU; at these, 73 times and 2%. Unreachable cycles are found after 10,000 new objects
    instead of 700 (and the older generations as often as before, relative to those)."""
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


@dataclass
class Services:
    """The backing services of one command; stops only what this command started."""

    settings: Settings
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        # Redis before PostgreSQL: the reverse of start, and the order the README promises.
        if self.redis is not None and self.redis.started_here:
            self.redis.stop()
        if self.postgres is not None and self.postgres.started_here:
            self.postgres.stop()


def start_services(say: bool = True) -> Services:
    """Start (or reuse) embedded servers for every URL not configured, and export the URLs.

    Exporting them to the environment lets child processes (web, worker) and Piccolo's
    own tooling find the same servers.
    """
    settings = get_settings()
    services = Services(settings=settings)
    try:
        if settings.embedded_database:
            services.postgres = EmbeddedPostgres(settings.data_dir / "postgres")
            services.postgres.ensure_running()
            os.environ["LOYALTY_DATABASE_URL"] = services.postgres.ensure_database(DATABASE_NAME)
            verb = "started" if services.postgres.started_here else "reusing running"
            services.notes.append(f"PostgreSQL: {verb} embedded {services.postgres.describe()}")
        else:
            services.notes.append("PostgreSQL: LOYALTY_DATABASE_URL")
        if settings.embedded_redis:
            services.redis = EmbeddedRedis(settings.data_dir / "redis")
            os.environ["LOYALTY_REDIS_URL"] = services.redis.ensure_running()
            verb = "started" if services.redis.started_here else "reusing running"
            services.notes.append(f"Redis: {verb} embedded server in {services.redis.data_dir}")
        else:
            services.notes.append("Redis: LOYALTY_REDIS_URL")
    except BaseException:
        services.stop()
        raise
    reset_settings()
    services.settings = get_settings()
    if say:
        for note in services.notes:
            click.echo(note, err=True)
    return services


async def migrate(quiet: bool = False) -> None:
    """Apply every pending Piccolo migration of every app."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    db.configure_engine(get_settings().database_url or "")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if quiet else contextlib.nullcontext():
        result = await run_forwards("all")
    if not result.success:
        raise click.ClickException(f"migrations failed: {result.message}\n{buffer.getvalue()}")
