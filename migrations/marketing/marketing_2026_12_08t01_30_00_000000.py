"""Segments the platform makes once per key, and the fixed member lists they select."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "segment keys and member lists"

STATEMENTS = """
ALTER TABLE segment_members
    ALTER COLUMN segment SET NOT NULL,
    ALTER COLUMN member SET NOT NULL,
    ADD CONSTRAINT segment_members_segment FOREIGN KEY (segment)
        REFERENCES segments (id) ON DELETE CASCADE,
    ADD CONSTRAINT segment_members_member FOREIGN KEY (member) REFERENCES members (id);
-- Each member once per list, however often the action runs; the filter looks up by member.
CREATE UNIQUE INDEX segment_members_once ON segment_members (segment, member);
CREATE INDEX segment_members_member ON segment_members (member);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketing", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
