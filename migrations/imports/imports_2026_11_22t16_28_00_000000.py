"""The members import's staging table (unlogged: rows live only inside one chunk's
transaction) and the unique keys that make errors and conflicts land once per row."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:28:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "import staging table, unique errors and conflicts"

STATEMENTS = """
CREATE UNLOGGED TABLE import_member_staging (
    import_id uuid NOT NULL,
    grp integer NOT NULL,
    row_no integer NOT NULL,
    new_id uuid NOT NULL,
    number varchar(16) NOT NULL,
    code varchar(16) NOT NULL,
    kind varchar(16) NOT NULL,
    name varchar(200) NOT NULL,
    phone varchar(20),
    email varchar(254),
    gender varchar(16),
    birthday date,
    address jsonb,
    notes text NOT NULL DEFAULT '',
    tags varchar(50)[] NOT NULL DEFAULT '{}',
    registered_at timestamptz NOT NULL,
    rep uuid,
    member_id uuid
);
CREATE INDEX import_member_staging_import ON import_member_staging (import_id, grp);
CREATE UNIQUE INDEX import_errors_once ON import_errors (import_id, row_no, "column");
CREATE UNIQUE INDEX import_conflicts_once ON import_conflicts (import_id, row_no, field);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="imports", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
