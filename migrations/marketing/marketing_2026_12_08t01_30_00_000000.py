"""Segments the platform makes once per key, and the fixed member lists they select."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "segment keys and member lists"

STATEMENTS = """
ALTER TABLE segments ADD COLUMN key varchar(100) NULL DEFAULT NULL;
ALTER TABLE segments ADD CONSTRAINT segments_key_key UNIQUE (key);
CREATE TABLE segment_members (
    id serial PRIMARY KEY,
    segment uuid NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    member uuid NOT NULL REFERENCES members (id),
    added_at timestamptz NOT NULL DEFAULT now()
);
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
