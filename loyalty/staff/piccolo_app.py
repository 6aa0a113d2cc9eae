from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.staff.tables import ApiKey, Staff, StaffToken

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations" / "staff"

APP_CONFIG = AppConfig(
    app_name="staff",
    migrations_folder_path=str(MIGRATIONS),
    table_classes=[Staff, StaffToken, ApiKey],
    migration_dependencies=[],
    commands=[],
)
