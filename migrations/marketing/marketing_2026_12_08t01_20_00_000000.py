"""Offer review: a submitted offer awaits approval; a reviewer can send it back with a
comment (it is a draft again)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "offer review: submitted status, send back with a comment"

STATEMENTS = """
ALTER TABLE offers DROP CONSTRAINT offers_status;
ALTER TABLE offers ADD CONSTRAINT offers_status CHECK (
    status IN ('draft', 'submitted', 'approved', 'sending', 'sent', 'cancelled'));
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketing", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
