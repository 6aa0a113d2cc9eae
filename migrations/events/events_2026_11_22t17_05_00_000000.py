"""Events published before delivery was tracked count as delivered; the relay finds the
undelivered ones by index."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T17:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "outbox delivery tracking"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="events", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            UPDATE outbox_events SET delivered_at = published_at WHERE published_at IS NOT NULL;
            DROP INDEX IF EXISTS outbox_events_unpublished;
            CREATE INDEX outbox_events_undelivered ON outbox_events (created_at)
                WHERE delivered_at IS NULL;
            """
        )

    manager.add_raw(run)
    return manager
