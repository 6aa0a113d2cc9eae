"""Demo data, seeded on the first run only: staff of every role (members come with their domain)."""

from __future__ import annotations

import json
from typing import Any

from rich.progress import Progress

from loyalty.settings import Settings
from loyalty.staff import schemas as staff_schemas
from loyalty.staff import service as staff_service
from loyalty.staff.tables import Staff

DEMO_STAFF = [
    ("admin", "admin", None, "Ada Admin"),
    ("gm", "general_manager", None, "Grace General"),
    ("manager", "manager", "east", "Ming Manager"),
    ("rep", "rep", "east", "Ravi Rep"),
    ("rep2", "rep", "east", "Rosa Rep"),
    ("service", "service", "service", "Sam Service"),
    ("marketing", "marketing", "marketing", "Mei Marketing"),
]


def logins_file(settings: Settings):
    return settings.data_dir / "demo-logins.json"


async def seed_if_empty(settings: Settings) -> list[dict[str, Any]]:
    """Seed once; on later runs return the logins kept in the data folder."""
    path = logins_file(settings)
    if await Staff.count() > 0:
        return json.loads(path.read_text()) if path.exists() else []
    logins = []
    with Progress(transient=True) as progress:
        task = progress.add_task("seeding demo staff", total=len(DEMO_STAFF))
        for username, role, department, name in DEMO_STAFF:
            created = await staff_service.create_staff(
                staff_schemas.StaffCreate(
                    username=username, role=role, department=department, display_name=name
                )
            )
            logins.append({"username": username, "password": created.password, "role": role})
            progress.advance(task)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(logins, indent=2))
    path.chmod(0o600)
    return logins
