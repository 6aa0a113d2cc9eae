"""Acting on the movement report: the month's declining and at-risk valuable members become
a segment and follow-up tasks for their reps, each once per month and member."""

from __future__ import annotations

from uuid import uuid4

import pytest

from loyalty.auth import ROLE_PERMISSIONS, Principal
from loyalty.console.common import this_month
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.marketing import segments
from loyalty.workflows import movement_actions
from tests.helpers.console import post_form, sign_in
from tests.helpers.marketing import buy

MARKETER = Principal(
    kind="staff",
    id=uuid4(),
    label="staff:mona",
    role="marketing",
    department="marketing",
    permissions=ROLE_PERMISSIONS["marketing"],
)


async def declining(client, pos, team) -> tuple[str, str]:
    """Chen Jie (ravi's) spent 6,000 in the months before this one (silver) and nothing
    since: a valuable member spending less. Lin Fang bought a little: not valuable."""
    chen = team["members"]["Chen Jie"]["id"]
    lin = team["members"]["Lin Fang"]["id"]
    await buy(client, pos, chen, "6000.00", days_ago=40)
    await buy(client, pos, lin, "50.00", days_ago=40)
    return chen, lin


async def test_the_segment_is_made_once_a_month_and_lists_each_member_once(client, pos, team):
    await declining(client, pos, team)
    month = this_month()
    first = await movement_actions.declining_segment(month, MARKETER)
    assert first.members == 1 and first.added == 1
    assert first.segment.name == f"Declining valuable members {month}"
    assert first.segment.members == 1
    again = await movement_actions.declining_segment(month, MARKETER)
    assert again.segment.id == first.segment.id and again.added == 0
    assert [s.id for s in await segments.list_segments()] == [first.segment.id]
    # Its filter is the fixed list: an offer to it reaches exactly these members.
    assert first.segment.filter.member_list == first.segment.id
    assert (await segments.count(first.segment.filter)).members == 1


async def test_each_rep_gets_one_task_a_month_even_after_closing_it(client, pos, team, make_client):
    chen, _ = await declining(client, pos, team)
    month = this_month()
    done = await movement_actions.declining_follow_ups(month, 5, MARKETER)
    assert (done.members, done.created) == (1, 1)
    assert (await movement_actions.declining_follow_ups(month, 5, MARKETER)).created == 0

    ravi = await sign_in(make_client(), "ravi")
    tasks = (await ravi.get("/console/tasks")).text
    assert "Chen Jie" in tasks and "Valuable member declining: call" in tasks
    assert "Lin Fang" not in tasks
    rosa = (await (await sign_in(make_client(), "rosa")).get("/console/tasks")).text
    assert "Chen Jie" not in rosa  # only the member's own rep

    # The rep calls: the task closes, and running the action again this month adds none.
    logged = await post_form(
        ravi,
        f"/console/members/{chen}/contacts",
        {"kind": "call", "channel": "phone", "direction": "outbound", "subject": "checking in"},
        f"/console/members/{chen}",
    )
    assert logged.status_code == 303, logged.text[-400:]
    assert "Chen Jie" not in (await ravi.get("/console/tasks")).text
    assert (await movement_actions.declining_follow_ups(month, 5, MARKETER)).created == 0
    assert "Chen Jie" not in (await ravi.get("/console/tasks")).text


async def test_bad_days_and_missing_permissions_are_refused(team):
    with pytest.raises(InvalidInput) as bad:
        await movement_actions.declining_follow_ups(this_month(), 0, MARKETER)
    assert bad.value.field == "days"
    rep = Principal(
        kind="staff", id=uuid4(), label="staff:x", role="rep", permissions=ROLE_PERMISSIONS["rep"]
    )
    with pytest.raises(PermissionDenied):
        await movement_actions.declining_segment(this_month(), rep)
    with pytest.raises(PermissionDenied):
        await movement_actions.declining_follow_ups(this_month(), 5, rep)


async def test_the_actions_through_the_api(client, pos, team, bearer):
    await declining(client, pos, team)
    month = this_month()
    marketing = await bearer("marketing")
    rep = await bearer("rep")
    url = f"/api/v1/reports/movement/{month}"
    made = await client.post(f"{url}/segment", headers=marketing)
    assert made.status_code == 200, made.text
    assert made.json()["members"] == 1 and made.json()["added"] == 1
    again = (await client.post(f"{url}/segment", headers=marketing)).json()
    assert again["added"] == 0 and again["segment"]["id"] == made.json()["segment"]["id"]
    tasks = await client.post(f"{url}/follow-ups", json={"days": 3}, headers=marketing)
    assert tasks.status_code == 200 and tasks.json()["created"] == 1
    assert (await client.post(f"{url}/follow-ups", json={}, headers=marketing)).json()[
        "created"
    ] == 0
    bad = await client.post(f"{url}/follow-ups", json={"days": 61}, headers=marketing)
    assert bad.status_code in (400, 422) and "days" in bad.text
    assert (
        await client.post("/api/v1/reports/movement/2026-13/segment", headers=marketing)
    ).status_code in (400, 422)
    for action in ("segment", "follow-ups"):
        assert (await client.post(f"{url}/{action}", json={}, headers=rep)).status_code == 403
