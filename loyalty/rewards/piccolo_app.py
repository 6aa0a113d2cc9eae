from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.rewards.tables import Redemption, Reward, Voucher

APP_CONFIG = AppConfig(
    app_name="rewards",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "rewards"),
    table_classes=[Reward, Redemption, Voucher],
    migration_dependencies=["loyalty.members.piccolo_app", "loyalty.points.piccolo_app"],
    commands=[],
)
