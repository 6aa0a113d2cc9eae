from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.reps.tables import (
    Assignment,
    Contact,
    FollowUp,
    Handover,
    MemberView,
    Reclaim,
    RepSettings,
    Rotation,
    RotationMove,
    ServiceTeamMember,
    StaffNotice,
    SwapRequest,
)

APP_CONFIG = AppConfig(
    app_name="reps",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "reps"),
    table_classes=[
        RepSettings,
        Assignment,
        Handover,
        SwapRequest,
        Reclaim,
        Contact,
        FollowUp,
        StaffNotice,
        MemberView,
        Rotation,
        RotationMove,
        ServiceTeamMember,
    ],
    migration_dependencies=[
        "loyalty.members.piccolo_app",
        "loyalty.staff.piccolo_app",
        "loyalty.tiers.piccolo_app",
    ],
    commands=[],
)
