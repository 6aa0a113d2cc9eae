"""The `loyalty` command: demo, migrate, serve, worker, create-staff, create-api-key, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click

from loyalty.imports.cli import import_group
from loyalty.infrastructure.commands import run_with_db
from loyalty.jobs.cli import jobs_group
from loyalty.settings import SettingsError, get_settings


class LoyaltyGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LoyaltyGroup)
def main() -> None:
    """Loyalty platform. With no LOYALTY_DATABASE_URL / LOYALTY_REDIS_URL, embedded servers
    in LOYALTY_DATA_DIR (default .loyalty/) are started or reused."""


@main.command()
def migrate() -> None:
    """Apply pending database migrations."""
    from loyalty.infrastructure.runtime import migrate as run_migrations
    from loyalty.infrastructure.runtime import start_services

    services = start_services()
    try:
        asyncio.run(run_migrations())
        click.echo("migrations applied")
    finally:
        services.stop()


@main.command()
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Web processes.")
@click.option("--host", default=None, help="Bind address (LOYALTY_HOST).")
@click.option("--port", type=int, default=None, help="Port (LOYALTY_PORT).")
def serve(workers: int | None, host: str | None, port: int | None) -> None:
    """Serve the web app and API (no background worker; run `loyalty worker` beside it)."""
    import uvicorn

    from loyalty.infrastructure.runtime import start_services
    from loyalty.infrastructure.serving import uvicorn_options

    services = start_services()
    settings = services.settings
    # uvicorn shuts down on SIGTERM and then raises it again: with the default handler that
    # would end the process before `finally` stops the embedded PostgreSQL and Redis.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(
            "loyalty.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers or settings.web_workers,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            **uvicorn_options(settings),
        )
    finally:
        services.stop()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@main.command()
def worker() -> None:
    """Run the background worker (arq): cron jobs and queued jobs."""
    from loyalty.infrastructure.logs import configure_logging
    from loyalty.infrastructure.runtime import start_services
    from loyalty.worker import create_worker

    services = start_services()
    try:
        configure_logging(services.settings.log_level)
        create_worker(services.settings).run()
    finally:
        services.stop()


@main.command("create-staff")
@click.option("--username", required=True)
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "general_manager", "manager", "rep", "service", "marketing"]),
)
@click.option("--department", default=None)
@click.option("--name", "display_name", default=None, help="Display name.")
def create_staff(
    username: str, role: str, department: str | None, display_name: str | None
) -> None:
    """Create a staff user; prompts for a password, or generates one when not interactive."""
    from loyalty.errors import DomainError
    from loyalty.infrastructure.runtime import start_services
    from loyalty.staff import schemas, service

    password = None
    if sys.stdin.isatty():
        password = (
            click.prompt(
                "Password (leave empty to generate one)",
                hide_input=True,
                confirmation_prompt=True,
                default="",
                show_default=False,
            )
            or None
        )
    services = start_services()
    try:
        data = schemas.StaffCreate(
            username=username,
            role=role,
            password=password,
            department=department,
            display_name=display_name,
        )
        try:
            created = run_with_db(lambda: service.create_staff(data))
        except DomainError as exc:
            raise click.ClickException(
                f"{exc.field}: {exc.detail}" if exc.field else exc.detail
            ) from None
        click.echo(f"created {created.staff.role} {created.staff.username} ({created.staff.id})")
        if created.password:
            click.echo(f"password (shown once): {created.password}")
    finally:
        services.stop()


@main.command("create-api-key")
@click.option("--name", required=True, help="What the key is for, e.g. 'POS store 12'.")
@click.option("--scopes", required=True, help="Comma-separated, e.g. purchases:write,members:read")
def create_api_key(name: str, scopes: str) -> None:
    """Create an integration API key and print it once."""
    from loyalty.errors import DomainError
    from loyalty.infrastructure.runtime import start_services
    from loyalty.staff import schemas, service

    services = start_services()
    try:
        data = schemas.ApiKeyCreate(
            name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()]
        )
        try:
            created = run_with_db(lambda: service.create_api_key(data, created_by=None))
        except DomainError as exc:
            raise click.ClickException(exc.detail) from None
        click.echo(f"API key {created.api_key.name} ({', '.join(created.api_key.scopes)})")
        click.echo(f"key (shown once): {created.key}")
    finally:
        services.stop()


@main.command()
def stop() -> None:
    """Stop embedded servers left running in the data folder."""
    from loyalty.infrastructure.embedded import stop_pids_in

    stop_pids_in(get_settings().data_dir)
    click.echo(f"stopped embedded servers in {get_settings().data_dir}")


@main.command()
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
def demo(host: str | None, port: int | None) -> None:
    """Run the whole platform on embedded servers with demo data: web, worker, logins."""
    from loyalty.demo import seed_if_empty
    from loyalty.infrastructure.runtime import migrate as run_migrations
    from loyalty.infrastructure.runtime import start_services

    started = time.monotonic()
    services = start_services()
    children: list[subprocess.Popen] = []
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        asyncio.run(run_migrations(quiet=True))
        logins = run_with_db(lambda: seed_if_empty(services.settings))
        settings = get_settings()
        bind_host, bind_port = host or settings.host, port or settings.port
        _check_port_free(bind_host, bind_port)
        env = {**os.environ, "LOYALTY_HOST": bind_host, "LOYALTY_PORT": str(bind_port)}
        # Own process groups: Ctrl-C reaches only us, and we stop children in order.
        for args in (["serve"], ["worker"]):
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "loyalty", *args], env=env, start_new_session=True
                )
            )
        _wait_until_healthy(f"http://{bind_host}:{bind_port}/health", children, timeout=30)
        base = f"http://{bind_host}:{bind_port}"
        click.echo("")
        click.echo(f"Loyalty demo is ready after {time.monotonic() - started:.1f}s")
        click.echo(f"  console   {base}/console")
        click.echo(f"  portal    {base}/portal")
        if not settings.smtp_host:
            click.echo(
                f"            (sign-in codes for members land in {settings.data_dir / 'outbox'})"
            )
        click.echo(f"  API docs  {base}/schema")
        click.echo(f"  health    {base}/health")
        click.echo("  staff logins (username / password / role):")
        for login in logins:
            click.echo(f"    {login['username']:<12} {login['password']:<24} {login['role']}")
        click.echo("Press Ctrl-C to stop web, worker, Redis and PostgreSQL.")
        while not stopping:
            if any(child.poll() is not None for child in children):
                click.echo("a child process exited; shutting down", err=True)
                break
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:  # web first, then worker
            _stop_child(child)
        services.stop()
        click.echo("stopped web, worker, Redis and PostgreSQL", err=True)


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise click.ClickException(
                f"{host}:{port} is already in use; choose another with --port or LOYALTY_PORT"
            ) from None


def _wait_until_healthy(url: str, children: list[subprocess.Popen], timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise click.ClickException("the web server or worker failed to start; see above")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise click.ClickException(f"{url} did not answer within {timeout:.0f}s")


def _stop_child(child: subprocess.Popen, grace: float = 15) -> None:
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


main.add_command(import_group)
main.add_command(jobs_group)
