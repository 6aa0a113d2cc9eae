"""A staff message (up to 5,000 characters) fits the portal inbox whole."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar

ID = "2026-12-08T01:38:52:951223"
VERSION = "1.38.0"
DESCRIPTION = "member messages up to 5,000 characters (staff messages)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="events", description=DESCRIPTION)

    manager.alter_column(
        table_class_name="Notification",
        tablename="member_notifications",
        column_name="body",
        db_column_name="body",
        params={"length": 5000},
        old_params={"length": 2000},
        column_class=Varchar,
        old_column_class=Varchar,
        schema=None,
    )

    manager.alter_column(
        table_class_name="Notification",
        tablename="member_notifications",
        column_name="body_zh",
        db_column_name="body_zh",
        params={"length": 5000},
        old_params={"length": 2000},
        column_class=Varchar,
        old_column_class=Varchar,
        schema=None,
    )

    return manager
