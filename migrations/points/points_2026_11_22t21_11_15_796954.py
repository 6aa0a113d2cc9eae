"""Lots and purchase lines keep their parent's member for lookups, without a foreign key of
their own: the parent's (ledger entry, purchase) is checked, and a merge moves both. The
second check cost every posting one more lookup and row lock per lot and per line.

The index of purchases by rep leaves out sales without a rep: they are never looked up by
rep, and every one of them went to the same end of the index."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import UUID, ForeignKey
from piccolo.table import Table


class Member(Table, tablename="members", schema=None):
    """What Piccolo needs to rebuild the old ForeignKey column."""

    id = UUID(primary_key=True)


ID = "2026-11-22T21:11:15:796954"
VERSION = "1.38.0"
DESCRIPTION = "no second member check on lots and purchase lines; rep index partial"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="points", description=DESCRIPTION)

    manager.alter_column(
        table_class_name="PointsLot",
        tablename="points_lots",
        column_name="member",
        db_column_name="member",
        params={"default": None},
        old_params={"default": None, "references": Member},
        column_class=UUID,
        old_column_class=ForeignKey,
        schema=None,
    )

    manager.alter_column(
        table_class_name="PurchaseLine",
        tablename="purchase_lines",
        column_name="member",
        db_column_name="member",
        params={"default": None},
        old_params={"default": None, "references": Member},
        column_class=UUID,
        old_column_class=ForeignKey,
        schema=None,
    )

    async def drop_member_checks():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            ALTER TABLE points_lots DROP CONSTRAINT IF EXISTS points_lots_member_fkey;
            ALTER TABLE purchase_lines DROP CONSTRAINT IF EXISTS purchase_lines_member_fkey;
            DROP INDEX purchases_rep;
            CREATE INDEX purchases_rep ON purchases (rep) WHERE rep IS NOT NULL;
            """
        )

    manager.add_raw(drop_member_checks)
    return manager
