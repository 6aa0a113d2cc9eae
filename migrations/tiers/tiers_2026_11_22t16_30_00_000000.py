"""Tier changes as HOT updates: room on every page and no index on the changing tier column,
so an evaluation rewrites no index entries (and much less WAL)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "member_tiers: fillfactor 80, no tier index"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="tiers", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            DROP INDEX IF EXISTS member_tiers_tier;
            ALTER TABLE member_tiers SET (fillfactor = 80);
            """
        )

    manager.add_raw(run)
    return manager
