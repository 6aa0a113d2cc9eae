"""Follow-up tasks made by an action run once per key and member (the column: 01:29)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "follow-up keys"

STATEMENTS = """
CREATE UNIQUE INDEX follow_ups_key_once ON follow_ups (member, key) WHERE key IS NOT NULL;
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="reps", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
