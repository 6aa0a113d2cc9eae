"""One delivery per subscriber and event; the due ones found by index."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook delivery constraints"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="webhooks", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            CREATE UNIQUE INDEX webhook_deliveries_once
                ON webhook_deliveries (subscription, event_id);
            CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
                WHERE status = 'pending';
            """
        )

    manager.add_raw(run)
    return manager
