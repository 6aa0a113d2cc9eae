from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.tiers.tables import MemberTier, TierChange, TierDefinition, TierSettings

APP_CONFIG = AppConfig(
    app_name="tiers",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "tiers"),
    table_classes=[TierDefinition, TierSettings, MemberTier, TierChange],
    migration_dependencies=["loyalty.members.piccolo_app", "loyalty.points.piccolo_app"],
    commands=[],
)
