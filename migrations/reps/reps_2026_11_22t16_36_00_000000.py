"""A member appears once in a rotation."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:36:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "rotation constraints"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="reps", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            "CREATE UNIQUE INDEX rotation_moves_once ON rotation_moves (rotation, member);"
        )

    manager.add_raw(run)
    return manager
