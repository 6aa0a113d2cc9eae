from pathlib import Path

from piccolo.conf.apps import AppConfig

from loyalty.members.tables import ClosureRequest, Member, MemberChange, MemberCredential

APP_CONFIG = AppConfig(
    app_name="members",
    migrations_folder_path=str(Path(__file__).resolve().parents[2] / "migrations" / "members"),
    table_classes=[Member, MemberChange, MemberCredential, ClosureRequest],
    migration_dependencies=["loyalty.staff.piccolo_app"],
    commands=[],
)
