"""member_qualifying_value() is gone: a posting reads its members' qualifying values with one
statement of its own after taking their locks (a fresh snapshot too), which costs a fraction
of a function call per member."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-04T19:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "drop member_qualifying_value()"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="tiers", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            "DROP FUNCTION IF EXISTS member_qualifying_value(uuid, text, timestamptz, timestamptz);"
        )

    manager.add_raw(run)
    return manager
