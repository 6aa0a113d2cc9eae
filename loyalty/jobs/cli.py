"""`loyalty jobs list` and `loyalty jobs run NAME`: the background jobs, their schedules and
last runs, and running one now in this process (recorded like the worker's runs)."""

from __future__ import annotations

import json

import click

from loyalty.infrastructure.commands import run_with_db


@click.group("jobs")
def jobs_group() -> None:
    """Background jobs: list them with their last run, or run one now."""


@jobs_group.command("list")
def list_jobs() -> None:
    """Every job, when it runs, and how its last run ended."""
    from loyalty.infrastructure.runtime import start_services
    from loyalty.jobs import service

    services = start_services(say=False)
    try:
        states = run_with_db(service.overview)
    finally:
        services.stop()
    for state in states:
        last = state.last
        if last is None:
            ran = "never run"
        else:
            ran = f"last {last.started_at:%Y-%m-%d %H:%M:%S} {last.outcome}"
            if last.result is not None:
                ran += f" {json.dumps(last.result, ensure_ascii=False)}"
        click.echo(f"{state.job.name:<24} {state.job.when:<40} {ran}")


@jobs_group.command("run")
@click.argument("name")
def run_job(name: str) -> None:
    """Run the job NAME now, here, and print what it did."""
    from arq import create_pool
    from arq.connections import RedisSettings

    from loyalty.errors import DomainError
    from loyalty.infrastructure.runtime import start_services
    from loyalty.jobs import service
    from loyalty.worker import BY_NAME, JOB_FUNCTIONS

    functions = {function.__name__: function for function in JOB_FUNCTIONS}
    if name not in BY_NAME:
        raise click.ClickException(f"no job {name}; `loyalty jobs list` lists them")
    services = start_services(say=False)

    async def go():
        redis = await create_pool(RedisSettings.from_dsn(services.settings.redis_url))
        try:
            return await service.run_here(name, functions[name], {"redis": redis})
        finally:
            await redis.aclose()

    try:
        try:
            result = run_with_db(go)
        except DomainError as exc:
            raise click.ClickException(exc.detail) from None
    finally:
        services.stop()
    click.echo(f"{name}: ok {json.dumps(service.plain_result(result), ensure_ascii=False)}")
