"""One lead per service team, and each colleague once."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "service team constraints"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="reps", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            CREATE UNIQUE INDEX service_team_one_lead ON service_team_members (member)
                WHERE role = 'lead';
            CREATE UNIQUE INDEX service_team_once ON service_team_members (member, staff);
            """
        )

    manager.add_raw(run)
    return manager
