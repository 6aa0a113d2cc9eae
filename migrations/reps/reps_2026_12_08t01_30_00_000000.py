"""Open requests found by when they came in (the columns: the previous migration)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "service desk: answered requests"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="reps", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            CREATE INDEX contacts_open_requests ON contacts (occurred_at)
                WHERE status = 'open';
            """
        )

    manager.add_raw(run)
    return manager
