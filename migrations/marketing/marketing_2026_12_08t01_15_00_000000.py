"""Points expiry warnings: one per member and expiry month (unique, so a rerun tells nobody
twice), the settings' one row, and the checks on what the tables hold."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:15:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "points expiry warnings constraints and indexes"

STATEMENTS = """
ALTER TABLE expiry_warning_settings ADD CONSTRAINT expiry_warning_settings_one_row
    CHECK (id = 1);
ALTER TABLE expiry_warning_settings ADD CONSTRAINT expiry_warning_settings_days
    CHECK (days_before BETWEEN 1 AND 90);
CREATE UNIQUE INDEX expiry_warnings_once ON expiry_warnings (member, month);
ALTER TABLE expiry_warnings ADD CONSTRAINT expiry_warnings_channel
    CHECK (channel IN ('email', 'sms', 'portal'));
ALTER TABLE expiry_warnings ADD CONSTRAINT expiry_warnings_status
    CHECK (status IN ('sending', 'sent', 'failed'));
CREATE INDEX expiry_warnings_run ON expiry_warnings (run, status);
-- The next runs try failed ones again.
CREATE INDEX expiry_warnings_failed ON expiry_warnings (created_at) WHERE status = 'failed';
CREATE INDEX expiry_warning_runs_started ON expiry_warning_runs (started_at);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketing", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
