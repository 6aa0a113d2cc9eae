from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.referrals.tables import Referral, ReferralCode, ReferralSettings

APP_CONFIG = AppConfig(
    app_name="referrals",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "referrals"),
    table_classes=[ReferralSettings, ReferralCode, Referral],
    migration_dependencies=[
        "loyalty.members.piccolo_app",
        "loyalty.points.piccolo_app",
        "loyalty.tiers.piccolo_app",
    ],
    commands=[],
)
