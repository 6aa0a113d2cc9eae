from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.points.tables import (
    EarningRules,
    LedgerEntry,
    PointsAccount,
    PointsLot,
    Purchase,
    PurchaseLine,
    PurchaseReturn,
)

APP_CONFIG = AppConfig(
    app_name="points",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "points"),
    table_classes=[
        EarningRules,
        PointsAccount,
        LedgerEntry,
        PointsLot,
        Purchase,
        PurchaseLine,
        PurchaseReturn,
    ],
    migration_dependencies=["loyalty.members.piccolo_app", "loyalty.staff.piccolo_app"],
    commands=[],
)
