"""Index for the outbox relay: only unpublished events are scanned."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T13:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "outbox relay index"

STATEMENTS = """
CREATE INDEX outbox_events_unpublished ON outbox_events (created_at) WHERE published_at IS NULL;
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="events", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
