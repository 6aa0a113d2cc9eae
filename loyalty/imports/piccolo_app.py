from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.imports.tables import Import, ImportedRow, RowConflict, RowError

APP_CONFIG = AppConfig(
    app_name="imports",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "imports"),
    table_classes=[Import, ImportedRow, RowError, RowConflict],
    migration_dependencies=["loyalty.members.piccolo_app"],
    commands=[],
)
