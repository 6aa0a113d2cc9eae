from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import ForeignKey

ID = "2026-11-22T15:31:47:365982"
VERSION = "1.38.0"
DESCRIPTION = "covering purchases index; drop member indexes made redundant"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="points", description=DESCRIPTION)

    manager.alter_column(
        table_class_name="LedgerEntry",
        tablename="points_ledger",
        column_name="member",
        db_column_name="member",
        params={"index": False},
        old_params={"index": True},
        column_class=ForeignKey,
        old_column_class=ForeignKey,
        schema=None,
    )

    manager.alter_column(
        table_class_name="Purchase",
        tablename="purchases",
        column_name="member",
        db_column_name="member",
        params={"index": False},
        old_params={"index": True},
        column_class=ForeignKey,
        old_column_class=ForeignKey,
        schema=None,
    )

    async def covering_index():
        from loyalty.infrastructure.db import run_script

        # Tier qualification sums each member's spend from the index alone.
        await run_script(
            """
            DROP INDEX purchases_member_time;
            CREATE INDEX purchases_member_time ON purchases (member, occurred_at DESC)
                INCLUDE (total, returned_amount);
            """
        )

    manager.add_raw(covering_index)
    return manager
