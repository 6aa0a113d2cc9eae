from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.marketing.tables import (
    MarketingSettings,
    Offer,
    OfferAudience,
    OfferBonus,
    OfferDelivery,
    OfferVoucher,
    Segment,
)

APP_CONFIG = AppConfig(
    app_name="marketing",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "marketing"),
    table_classes=[
        MarketingSettings,
        Segment,
        Offer,
        OfferAudience,
        OfferDelivery,
        OfferVoucher,
        OfferBonus,
    ],
    migration_dependencies=[
        "loyalty.members.piccolo_app",
        "loyalty.rewards.piccolo_app",
        "loyalty.events.piccolo_app",
    ],
    commands=[],
)
