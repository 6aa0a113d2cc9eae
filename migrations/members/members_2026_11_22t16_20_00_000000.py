"""Statements include merged members' entries: find them by index, not by a scan."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "index on members.merged_into"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="members", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            "CREATE INDEX members_merged_into ON members (merged_into) WHERE merged_into IS NOT NULL;"
        )

    manager.add_raw(run)
    return manager
