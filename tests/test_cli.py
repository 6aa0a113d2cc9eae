"""The `loyalty` command against a fresh, empty database: migrate, create-staff, create-api-key."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg
import pytest

from tests.helpers.database import with_database

FRESH = "loyalty_cli_test"


@pytest.fixture(scope="module")
def fresh_env(backing_services):
    async def recreate():
        admin = await asyncpg.connect(with_database(backing_services["database_url"], "postgres"))
        await admin.execute(f"DROP DATABASE IF EXISTS {FRESH} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {FRESH}")
        await admin.close()

    import asyncio

    asyncio.run(recreate())
    return {
        **os.environ,
        "LOYALTY_DATABASE_URL": with_database(backing_services["database_url"], FRESH),
        "PICCOLO_CONF": "loyalty.piccolo_conf",
    }


def loyalty(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loyalty", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_migrate_on_an_empty_database_then_nothing_is_pending(fresh_env):
    result = loyalty(fresh_env, "migrate")
    assert result.returncode == 0, result.stderr
    assert "migrations applied" in result.stdout
    check = subprocess.run(
        [sys.executable, "-m", "piccolo.main", "migrations", "check"],
        env=fresh_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
    assert "staff" in check.stdout
    assert "False" not in check.stdout  # every migration has run
    again = loyalty(fresh_env, "migrate")
    assert again.returncode == 0, again.stderr


async def test_tables_match_their_migrations():
    """No model change is waiting for a migration (what `piccolo migrations new --auto` would find)."""
    from piccolo.apps.migrations.commands.new import AutoMigrationManager
    from piccolo.conf.apps import Finder

    manager = AutoMigrationManager(auto_input="y")
    for app_config in Finder().get_app_registry().app_configs.values():
        statements = await manager.get_alter_statements(app_config)
        pending = [s.statements for s in statements if s.statements]
        assert not pending, f"{app_config.app_name} has unmigrated changes: {pending}"


def test_create_staff_generates_a_password_and_refuses_duplicates(fresh_env):
    assert loyalty(fresh_env, "migrate").returncode == 0
    result = loyalty(fresh_env, "create-staff", "--username", "clerk7", "--role", "service")
    assert result.returncode == 0, result.stderr
    assert "password (shown once): " in result.stdout
    again = loyalty(fresh_env, "create-staff", "--username", "clerk7", "--role", "service")
    assert again.returncode != 0 and "taken" in again.stderr


def test_create_api_key_prints_the_key_once_and_checks_scopes(fresh_env):
    assert loyalty(fresh_env, "migrate").returncode == 0
    result = loyalty(
        fresh_env, "create-api-key", "--name", "POS 1", "--scopes", "purchases:write,members:read"
    )
    assert result.returncode == 0, result.stderr
    assert "key (shown once): lk_" in result.stdout
    bad = loyalty(fresh_env, "create-api-key", "--name", "POS 2", "--scopes", "root:all")
    assert bad.returncode != 0 and "unknown scope" in bad.stderr


def test_production_mode_without_secret_key_is_an_error(fresh_env):
    env = {k: v for k, v in fresh_env.items() if k != "LOYALTY_SECRET_KEY"}
    result = loyalty({**env, "LOYALTY_MODE": "production"}, "migrate")
    assert result.returncode != 0
    assert "LOYALTY_SECRET_KEY is required" in result.stderr
