from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.webhooks.tables import WebhookAttempt, WebhookDelivery, WebhookSubscription

APP_CONFIG = AppConfig(
    app_name="webhooks",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "webhooks"),
    table_classes=[WebhookSubscription, WebhookDelivery, WebhookAttempt],
    migration_dependencies=["loyalty.events.piccolo_app"],
    commands=[],
)
