"""The members import's staging table no longer carries a referral code per row: new
members get theirs from the referrals domain (`referrals.codes.issue_codes`), as enrolment's."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-07T23:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "import staging without referral codes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="imports", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script("ALTER TABLE import_member_staging DROP COLUMN code;")

    manager.add_raw(run)
    return manager
