from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.events.tables import Notification, OutboxEvent

APP_CONFIG = AppConfig(
    app_name="events",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "events"),
    table_classes=[OutboxEvent, Notification],
    migration_dependencies=[],
    commands=[],
)
