"""Fixtures of the reps tests."""

from __future__ import annotations

import pytest

from loyalty.infrastructure import db


@pytest.fixture
async def team(client, bearer, make_staff):
    """A department with a manager and two reps (old enough for pool members)."""
    headers = {
        "manager": await bearer("manager", username="mgr_east", department="east"),
        "rep": await bearer("rep", username="rep_east", department="east"),
        "rep2": await bearer("rep", username="rep_east2", department="east"),
        "other_rep": await bearer("rep", username="rep_west", department="west"),
        "gm": await bearer("general_manager", username="gm"),
    }
    async with db.connection() as conn:
        await conn.execute("UPDATE staff SET created_at = now() - interval '90 days'")
        ids = dict(await conn.fetch("SELECT username, id FROM staff"))
    return {"headers": headers, "ids": {k: str(v) for k, v in ids.items()}}
