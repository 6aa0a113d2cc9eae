from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.reps.tables import Contact

APP_CONFIG = AppConfig(
    app_name="reps",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "reps"),
    table_classes=[Contact],
    migration_dependencies=["loyalty.members.piccolo_app", "loyalty.staff.piccolo_app"],
    commands=[],
)
