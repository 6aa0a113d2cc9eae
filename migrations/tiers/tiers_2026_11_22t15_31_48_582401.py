from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import ForeignKey

ID = "2026-11-22T15:31:48:582401"
VERSION = "1.38.0"
DESCRIPTION = "drop tier_changes member index made redundant"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="tiers", description=DESCRIPTION)

    manager.alter_column(
        table_class_name="TierChange",
        tablename="tier_changes",
        column_name="member",
        db_column_name="member",
        params={"index": False},
        old_params={"index": True},
        column_class=ForeignKey,
        old_column_class=ForeignKey,
        schema=None,
    )

    return manager
