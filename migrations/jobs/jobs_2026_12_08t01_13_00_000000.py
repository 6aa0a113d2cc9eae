"""The jobs page reads each job's newest runs, and pruning keeps the newest per job."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:13:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "job runs indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="jobs", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            CREATE INDEX job_runs_job_started ON job_runs (job, started_at DESC);
            CREATE INDEX job_runs_job_id ON job_runs (job_id);
            """
        )

    manager.add_raw(run)
    return manager
