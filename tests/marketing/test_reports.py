"""The monthly movement report (API and CSV) and automatic offers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

from loyalty.marketing import automatic
from loyalty.settings import get_settings
from tests.helpers.marketing import approve, buy, enrol, make_offer


def month_of(at: datetime) -> str:
    return at.astimezone(get_settings().tz).strftime("%Y-%m")


async def report(client, headers, month: str) -> dict:
    response = await client.get(f"/api/v1/reports/movement/{month}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_movement_report_and_csv(client, admin, pos, bearer):
    marketing = await bearer("marketing")
    now = datetime.now(UTC)
    climber = await enrol(client, admin, "Climber")
    leaver = await enrol(client, admin, "Leaver")
    returner = await enrol(client, admin, "Returner")
    await buy(client, pos, climber["id"], "6000.00", days_ago=0.01)
    await buy(client, pos, leaver["id"], "100.00", days_ago=100)
    await buy(client, pos, returner["id"], "100.00", days_ago=200)
    await buy(client, pos, returner["id"], "100.00", days_ago=0.02)

    this_month = await report(client, marketing, month_of(now))
    moves = {(r["movement"], r["name"]) for r in this_month["members"]}
    assert ("up", "Climber") in moves and ("won_back", "Returner") in moves
    row = next(r for r in this_month["members"] if r["name"] == "Climber")
    assert row["brief_url"] == f"/console/members/{climber['id']}"
    assert this_month["totals"]["up"] >= 1 and this_month["by_department"][0]["key"] == ""

    lost_month = await report(client, marketing, month_of(now - timedelta(days=10)))
    assert ("lost", "Leaver") in {(r["movement"], r["name"]) for r in lost_month["members"]}

    response = await client.get(f"/api/v1/reports/movement/{month_of(now)}/csv", headers=marketing)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {"up", "won_back"} <= {r["movement"] for r in rows}
    assert all(
        r["brief_url"].endswith(f"/console/members/{climber['id']}")
        for r in rows
        if r["name"] == "Climber"
    )
    bad = await client.get("/api/v1/reports/movement/2026-13", headers=marketing)
    assert bad.status_code == 400  # the path pattern says YYYY-MM with a real month
    assert (
        await client.get(f"/api/v1/reports/movement/{month_of(now)}", headers=await bearer("rep"))
    ).status_code == 403


async def test_birthday_offer_goes_once_a_month_to_members_born_this_month(
    client, author, admin, mailbox
):
    now = datetime.now(UTC)
    local = now.astimezone(get_settings().tz)
    prefs = {"channels": ["email"], "consents": [{"channel": "email", "granted": True}]}
    await enrol(
        client,
        admin,
        "Birthday",
        email="bday@example.com",
        birthday=f"1985-{local.month:02d}-01",
        contact_preferences=prefs,
    )
    other_month = local.month % 12 + 1
    await enrol(
        client,
        admin,
        "Later",
        email="later@example.com",
        birthday=f"1985-{other_month:02d}-01",
        contact_preferences=prefs,
    )
    template = await make_offer(
        client,
        author,
        auto_kind="birthday",
        title_en="Happy birthday",
        valid_until=(now + timedelta(days=400)).isoformat(),
    )
    await approve(client, admin, template["id"])
    await automatic.run()
    await automatic.run()  # daily: nobody twice
    assert [m["To"] for m in mailbox.messages] == ["bday@example.com"]
    listed = (await client.get("/api/v1/offers", headers=admin)).json()
    instance = next(o for o in listed if o["template_id"] == template["id"])
    assert instance["period"] == local.strftime("%Y-%m") and instance["audience_size"] == 1
