"""Name search index for member lookup."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T12:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "member name search index"

STATEMENTS = """
-- Trigram search where the server ships pg_trgm (the embedded pgserver build does not).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX members_name_trgm ON members USING gin (name gin_trgm_ops);
    END IF;
END $$;
CREATE INDEX member_changes_member_time ON member_changes (member, at DESC);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="members", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
