"""Company-owned relationships: assignment history, the pool, reclaim rules on a fixed clock,
handovers when a rep leaves, swaps, contacts and follow-ups, the brief and its audit."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import UUID

from loyalty.infrastructure import db
from loyalty.reps import contacts, follow_ups, handovers, reclaim
from tests.helpers.members import enrol
from tests.helpers.purchases import purchase_body


async def backdate_assignment(member_id: str, started: datetime) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE assignments SET started_at = $2 WHERE member = $1::uuid AND ended_at IS NULL",
            member_id,
            started,
        )


async def rep_of(member_id: str) -> str | None:
    async with db.connection() as conn:
        rep = await conn.fetchval("SELECT assigned_rep FROM members WHERE id = $1::uuid", member_id)
    return str(rep) if rep else None


async def test_first_registration_decides_and_history_is_kept(client, admin, team):
    member = await enrol(client, team["headers"]["rep"])
    assert member["assigned_rep_id"] == team["ids"]["rep_east"]
    moved = await client.put(
        f"/api/v1/members/{member['id']}/assignment",
        json={"rep_id": team["ids"]["rep_east2"], "reason": "closer to the customer"},
        headers=team["headers"]["manager"],
    )
    assert moved.status_code == 200, moved.text
    history = (
        await client.get(f"/api/v1/members/{member['id']}/assignments", headers=admin)
    ).json()
    assert [(h["rep"], h["kind"], h["ended_at"] is None) for h in history] == [
        ("rep_east2", "transfer", True),
        ("rep_east", "registration", False),
    ]
    assert history[0]["approved_by"] == "staff:mgr_east"


async def test_reps_cannot_move_members(client, team):
    member = await enrol(client, team["headers"]["rep"])
    response = await client.put(
        f"/api/v1/members/{member['id']}/assignment",
        json={"rep_id": team["ids"]["rep_east2"], "reason": "I am leaving"},
        headers=team["headers"]["rep"],
    )
    assert response.status_code == 403
    assert await rep_of(member["id"]) == team["ids"]["rep_east"]


async def test_the_sale_is_credited_to_the_rep_at_the_time(client, admin, pos, team):
    member = await enrol(client, team["headers"]["rep"])
    first = purchase_body(member["id"])
    await client.post("/api/v1/purchases", json=first, headers=pos)
    await client.put(
        f"/api/v1/members/{member['id']}/assignment",
        json={"rep_id": team["ids"]["rep_east2"], "reason": "rebalance"},
        headers=team["headers"]["manager"],
    )
    second = purchase_body(member["id"])
    await client.post("/api/v1/purchases", json=second, headers=pos)
    reps = [
        (await client.get(f"/api/v1/purchases/{body['external_id']}", headers=admin)).json()[
            "rep_id"
        ]
        for body in (first, second)
    ]
    assert reps == [team["ids"]["rep_east"], team["ids"]["rep_east2"]]


async def test_pool_hand_out_rules(client, admin, team, make_staff):
    pool = [await enrol(client, admin, name=f"Pool {i}") for i in range(4)]
    ids = [m["id"] for m in pool]
    manager = team["headers"]["manager"]
    listed = (await client.get("/api/v1/pool", headers=manager)).json()
    assert {m["member_id"] for m in listed} == set(ids)
    # Not for a rep of another department.
    response = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": ids[:1], "rep_id": team["ids"]["rep_west"], "reason": "x"},
        headers=manager,
    )
    assert response.status_code == 403
    # Not for a rep in their first month.
    newcomer = await make_staff("rep_new", "rep", "east")
    response = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": ids[:1], "rep_id": str(newcomer.id), "reason": "x"},
        headers=manager,
    )
    assert response.status_code == 409 and "first 30 days" in response.json()["detail"]
    # The daily cap counts what the rep received today.
    settings = (await client.get("/api/v1/rep-settings", headers=admin)).json()
    settings = {k: v for k, v in settings.items() if k not in ("updated_at", "updated_by")}
    await client.put("/api/v1/rep-settings", json={**settings, "daily_pool_cap": 3}, headers=admin)
    ok = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": ids[:2], "rep_id": team["ids"]["rep_east"], "reason": "new leads"},
        headers=manager,
    )
    assert ok.status_code == 200 and ok.json()["assigned"] == 2
    over = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": ids[2:], "rep_id": team["ids"]["rep_east"], "reason": "more"},
        headers=manager,
    )
    assert over.status_code == 409 and "3 pool members a day" in over.json()["detail"]
    # A member already served is not in the pool.
    taken = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": ids[:1], "rep_id": team["ids"]["rep_east2"], "reason": "x"},
        headers=manager,
    )
    assert taken.status_code == 409
    assert [await rep_of(i) for i in ids] == [team["ids"]["rep_east"]] * 2 + [None, None]
    assert (await client.get("/api/v1/pool", headers=team["headers"]["rep"])).status_code == 403


async def test_inactive_rule_warns_then_reclaims_on_the_first_of_the_fourth_month(
    client, admin, team
):
    member = await enrol(client, team["headers"]["rep"])
    await backdate_assignment(member["id"], datetime(2026, 1, 10, 3, tzinfo=UTC))
    quiet = await reclaim.reclaim_members(date(2026, 3, 20))
    assert (quiet.warned, quiet.reclaimed) == (0, 0)
    warned = await reclaim.reclaim_members(date(2026, 3, 26))
    assert (warned.warned, warned.reclaimed) == (1, 0)
    again = await reclaim.reclaim_members(date(2026, 3, 27))
    assert (again.warned, again.reclaimed) == (0, 0)
    notices = (await client.get("/api/v1/notices", headers=team["headers"]["rep"])).json()
    assert len(notices) == 1 and "returns to the pool on 2026-04-01" in notices[0]["title"]
    manager_notices = (
        await client.get("/api/v1/notices", headers=team["headers"]["manager"])
    ).json()
    assert len(manager_notices) == 1
    assert await rep_of(member["id"]) == team["ids"]["rep_east"]
    done = await reclaim.reclaim_members(date(2026, 4, 1))
    assert done.reclaimed == 1 and await rep_of(member["id"]) is None
    twice = await reclaim.reclaim_members(date(2026, 4, 1))
    assert twice.reclaimed == 0
    history = (
        await client.get(f"/api/v1/members/{member['id']}/assignments", headers=admin)
    ).json()
    assert history[0]["end_reason"] == "reclaim:inactive"


async def test_a_purchase_keeps_the_member_and_no_deal_rule_is_shorter_for_gold(
    client, admin, pos, team
):
    member = await enrol(client, team["headers"]["rep"])
    started = datetime.now(UTC) - timedelta(days=400)
    await backdate_assignment(member["id"], started)
    bought = datetime.now(UTC) - timedelta(days=200)
    body = purchase_body(member["id"], ("TV", 1, "100.00", "general"))
    body["occurred_at"] = bought.isoformat()
    await client.post("/api/v1/purchases", json=body, headers=pos)
    today = datetime.now(UTC).date()
    # Six months after the month of the last purchase (a normal member).
    due = date(bought.year + (bought.month + 5) // 12, (bought.month + 5) % 12 + 1, 1)
    run = await reclaim.reclaim_members(today)
    assert run.reclaimed == (1 if due <= today else 0)
    async with db.connection() as conn:
        rule = await conn.fetchval(
            "SELECT rule FROM reclaims WHERE member = $1::uuid", member["id"]
        )
    assert rule in ("no_deal", None)
    # A gold member is reclaimed after four months (rep_settings.tier_no_deal_months).
    gold = await enrol(client, team["headers"]["rep"], name="Gold Member")
    await backdate_assignment(gold["id"], datetime.now(UTC) - timedelta(days=400))
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE member_tiers SET tier = 'gold' WHERE member = $1::uuid", gold["id"]
        )
    body = purchase_body(gold["id"], ("TV", 1, "100.00", "general"))
    body["occurred_at"] = (datetime.now(UTC) - timedelta(days=140)).isoformat()
    await client.post("/api/v1/purchases", json=body, headers=pos)
    await reclaim.reclaim_members(today)
    assert await rep_of(gold["id"]) is None


async def test_protection_take_back_needs_no_service_record(client, admin, team):
    served = await enrol(client, team["headers"]["rep"], name="Served")
    neglected = await enrol(client, team["headers"]["rep"], name="Neglected")
    for member in (served, neglected):
        await backdate_assignment(member["id"], datetime.now(UTC) - timedelta(days=40))
    visit = await client.post(
        f"/api/v1/members/{served['id']}/contacts",
        json={"kind": "visit", "channel": "visit", "outcome": "liked the new tea"},
        headers=team["headers"]["rep"],
    )
    assert visit.status_code == 201, visit.text
    async with db.connection() as conn:  # the visit was in the protected month
        await conn.execute(
            "UPDATE contacts SET occurred_at = now() - interval '35 days' WHERE member = $1",
            UUID(served["id"]),
        )
    preview = (
        await client.get("/api/v1/reclaims/preview", headers=team["headers"]["manager"])
    ).json()
    assert [(p["name"], p["rule"]) for p in preview if p["rule"] == "protection"] == [
        ("Neglected", "protection")
    ]
    refused = await client.post(
        f"/api/v1/members/{served['id']}/reclaim", headers=team["headers"]["manager"]
    )
    assert refused.status_code == 409
    taken = await client.post(
        f"/api/v1/members/{neglected['id']}/reclaim", headers=team["headers"]["manager"]
    )
    assert taken.status_code == 200 and await rep_of(neglected["id"]) is None


async def test_a_leaving_rep_hands_members_to_the_manager_queue(client, admin, team):
    members = [await enrol(client, team["headers"]["rep"], name=f"Book {i}") for i in range(2)]
    left = await client.patch(
        f"/api/v1/staff/{team['ids']['rep_east']}", json={"active": False}, headers=admin
    )
    assert left.status_code == 200, left.text
    assert [await rep_of(m["id"]) for m in members] == [None, None]
    queue = (await client.get("/api/v1/handovers", headers=team["headers"]["manager"])).json()
    assert {q["name"] for q in queue} == {"Book 0", "Book 1"}
    assert all(q["from_rep"] == "rep_east" and not q["overdue"] for q in queue)
    # Not in the pool: they go through the handover queue.
    pool = (await client.get("/api/v1/pool", headers=team["headers"]["manager"])).json()
    assert not {m["member_id"] for m in pool} & {m["id"] for m in members}
    back = await client.post(
        f"/api/v1/handovers/{queue[0]['id']}/assign",
        json={"rep_id": team["ids"]["rep_east"], "reason": "back"},
        headers=team["headers"]["manager"],
    )
    assert back.status_code in (409, 422)
    done = await client.post(
        f"/api/v1/handovers/{queue[0]['id']}/assign",
        json={"rep_id": team["ids"]["rep_east2"], "reason": "takes over the book"},
        headers=team["headers"]["manager"],
    )
    assert done.status_code == 200, done.text
    assert await rep_of(queue[0]["member_id"]) == team["ids"]["rep_east2"]
    # The other one is overdue after 7 days and goes to the general manager, once.
    async with db.connection() as conn:
        await conn.execute("UPDATE handovers SET due_at = now() - interval '1 hour'")
    assert await handovers.escalate_handovers() == 1
    assert await handovers.escalate_handovers() == 0
    told = (await client.get("/api/v1/notices", headers=team["headers"]["gm"])).json()
    assert len(told) == 1 and told[0]["kind"] == "handover_overdue"


async def test_swaps_need_the_right_manager(client, admin, team):
    a = await enrol(client, team["headers"]["rep"], name="Member A")
    b = await enrol(client, team["headers"]["rep2"], name="Member B")
    c = await enrol(client, team["headers"]["other_rep"], name="Member C")
    swap = await client.post(
        "/api/v1/swaps",
        json={"member_a": a["id"], "member_b": b["id"], "reason": "languages"},
        headers=team["headers"]["rep"],
    )
    assert swap.status_code == 201, swap.text
    not_mine = await client.post(
        "/api/v1/swaps",
        json={"member_a": b["id"], "member_b": c["id"], "reason": "x"},
        headers=team["headers"]["rep"],
    )
    assert not_mine.status_code == 403
    by_rep = await client.post(
        f"/api/v1/swaps/{swap.json()['id']}/approve", json={}, headers=team["headers"]["rep"]
    )
    assert by_rep.status_code == 403
    approved = await client.post(
        f"/api/v1/swaps/{swap.json()['id']}/approve",
        json={"note": "fine"},
        headers=team["headers"]["manager"],
    )
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert await rep_of(a["id"]) == team["ids"]["rep_east2"]
    assert await rep_of(b["id"]) == team["ids"]["rep_east"]
    across = await client.post(
        "/api/v1/swaps",
        json={"member_a": b["id"], "member_b": c["id"], "reason": "moving city"},
        headers=team["headers"]["rep"],
    )
    denied = await client.post(
        f"/api/v1/swaps/{across.json()['id']}/approve", json={}, headers=team["headers"]["manager"]
    )
    assert denied.status_code == 403
    ok = await client.post(
        f"/api/v1/swaps/{across.json()['id']}/approve", json={}, headers=team["headers"]["gm"]
    )
    assert ok.status_code == 200
    assert await rep_of(c["id"]) == team["ids"]["rep_east"]


async def test_contacts_flag_late_logs_and_close_follow_ups(client, admin, pos, team):
    member = await enrol(client, team["headers"]["rep"])
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    planned = await follow_ups.plan_follow_ups(datetime.now(UTC).date() + timedelta(days=7))
    assert planned.created == 1
    tasks = (await client.get("/api/v1/tasks?days=14", headers=team["headers"]["rep"])).json()
    assert [(t["name"], t["rule"]) for t in tasks] == [("Chen Jie", "new_customer")]
    assert (await client.get("/api/v1/tasks?days=14", headers=team["headers"]["rep2"])).json() == []
    old = datetime.now(UTC) - timedelta(days=10)
    late = await client.post(
        f"/api/v1/members/{member['id']}/contacts",
        json={
            "kind": "call",
            "channel": "phone",
            "occurred_at": old.isoformat(),
            "outcome": "will visit",
            "next_step": "bring samples",
        },
        headers=team["headers"]["rep"],
    )
    assert late.status_code == 201 and late.json()["late"] is True
    on_time = await client.post(
        f"/api/v1/members/{member['id']}/contacts",
        json={"kind": "visit", "channel": "visit"},
        headers=team["headers"]["rep"],
    )
    assert on_time.json()["late"] is False
    assert (await client.get("/api/v1/tasks?days=14", headers=team["headers"]["rep"])).json() == []
    # The next weekly task is a week after the visit: beyond a five-day horizon, whatever
    # the hour (the local date may run a day ahead of UTC's).
    again = await follow_ups.plan_follow_ups(datetime.now(UTC).date(), horizon_days=5)
    assert again.created == 0


async def test_late_deadline_is_the_next_working_day_at_ten():
    friday_evening = datetime(2026, 11, 20, 11, tzinfo=UTC)  # 19:00 in Shanghai
    deadline = contacts.log_deadline(friday_evening, 10)
    assert deadline.isoformat() == "2026-11-23T10:00:00+08:00"  # Monday


async def test_brief_has_what_a_rep_needs_and_is_audited(client, admin, pos, team):
    member = await enrol(
        client, team["headers"]["rep"], household={"spouse": "Wang Fang"}, hobbies=["tea"]
    )
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    await client.post(
        f"/api/v1/members/{member['id']}/contacts",
        json={"kind": "call", "channel": "phone", "outcome": "happy"},
        headers=team["headers"]["rep"],
    )
    brief = await client.get(
        f"/api/v1/members/{member['id']}/brief", headers=team["headers"]["rep"]
    )
    assert brief.status_code == 200, brief.text
    data = brief.json()
    assert data["tier"] == "normal" and data["points"]["pending"] == 100
    assert data["next_tier"]["code"] == "silver"
    assert data["recent_purchases"][0]["total"] == "100.00"
    assert data["last_contacts"][0]["outcome"] == "happy"
    assert data["member"]["household"]["spouse"] == "Wang Fang"
    assert data["rep"]["username"] == "rep_east"
    assert data["service_level"]["contact_cadence_days"] == 90
    views = (await client.get(f"/api/v1/members/{member['id']}/views", headers=admin)).json()
    assert [(v["staff"], v["what"]) for v in views] == [("rep_east", "brief")]


async def test_staff_message_goes_through_the_company_channel(client, admin, team, mailbox):
    member = await enrol(
        client,
        team["headers"]["rep"],
        email="chen@example.com",
        contact_preferences={
            "channels": ["email"],
            "consents": [{"channel": "email", "granted": True}],
        },
    )
    sent = await client.post(
        f"/api/v1/members/{member['id']}/messages",
        json={"channel": "email", "subject": "New tea", "body": "Spring harvest is in."},
        headers=team["headers"]["rep"],
    )
    assert sent.status_code == 201, sent.text
    assert mailbox.to("chen@example.com")[-1]["Subject"] == "New tea"
    logged = (await client.get(f"/api/v1/members/{member['id']}/contacts", headers=admin)).json()
    assert logged[0]["kind"] == "message" and logged[0]["direction"] == "outbound"
    no_consent = await client.post(
        f"/api/v1/members/{member['id']}/messages",
        json={"channel": "sms", "subject": "x", "body": "y"},
        headers=team["headers"]["rep"],
    )
    assert no_consent.status_code == 422 and no_consent.json()["field"] == "channel"


async def _set_rep_settings(client, admin, **changes) -> None:
    settings = (await client.get("/api/v1/rep-settings", headers=admin)).json()
    settings = {k: v for k, v in settings.items() if k not in ("updated_at", "updated_by")}
    response = await client.put("/api/v1/rep-settings", json={**settings, **changes}, headers=admin)
    assert response.status_code == 200, response.text


# --- pool members handed out through PUT /members/{id}/assignment --------------------------


async def test_pool_member_cannot_go_to_a_rep_in_the_first_month_by_transfer(
    client, admin, team, make_staff
):
    """ "A new rep gets no pool members in the first month", whichever call hands them out
    (POST /pool/assignments or PUT .../assignment)."""
    lead = await enrol(client, admin, name="Pool Lead")  # enrolled by an admin: in the pool
    assert await rep_of(lead["id"]) is None
    newcomer = await make_staff("rep_newcomer", "rep", "east")
    refused = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": [lead["id"]], "rep_id": str(newcomer.id), "reason": "x"},
        headers=team["headers"]["manager"],
    )
    assert refused.status_code == 409
    moved = await client.put(
        f"/api/v1/members/{lead['id']}/assignment",
        json={"rep_id": str(newcomer.id), "reason": "x"},
        headers=team["headers"]["manager"],
    )
    assert moved.status_code == 409, moved.text
    assert await rep_of(lead["id"]) is None


async def test_pool_daily_cap_cannot_be_bypassed_by_transfer(client, admin, team):
    """ "Never a whole region at once": pool members moved one by one with PUT
    .../assignment count against the daily cap too."""
    await _set_rep_settings(client, admin, daily_pool_cap=1)
    leads = [await enrol(client, admin, name=f"Pool {i}") for i in range(3)]
    manager = team["headers"]["manager"]
    rep_id = team["ids"]["rep_east"]
    first = await client.post(
        "/api/v1/pool/assignments",
        json={"member_ids": [leads[0]["id"]], "rep_id": rep_id, "reason": "lead"},
        headers=manager,
    )
    assert first.status_code == 200, first.text
    for lead in leads[1:]:
        response = await client.put(
            f"/api/v1/members/{lead['id']}/assignment",
            json={"rep_id": rep_id, "reason": "more leads"},
            headers=manager,
        )
        assert response.status_code == 409, response.text
    assert [await rep_of(lead["id"]) for lead in leads[1:]] == [None, None]


# --- handover queue members ----------------------------------------------------------------


async def test_another_departments_manager_cannot_take_a_handover_member(
    client, admin, team, bearer
):
    """A departing rep's members "go back through the manager" of their department's
    handover queue: another department's manager cannot take them by transfer."""
    west_manager = await bearer("manager", username="mgr_west", department="west")
    member = await enrol(client, team["headers"]["rep"], name="Book Member")
    left = await client.patch(
        f"/api/v1/staff/{team['ids']['rep_east']}", json={"active": False}, headers=admin
    )
    assert left.status_code == 200, left.text
    queue = (await client.get("/api/v1/handovers", headers=team["headers"]["manager"])).json()
    assert [q["member_id"] for q in queue] == [member["id"]]

    taken = await client.put(
        f"/api/v1/members/{member['id']}/assignment",
        json={"rep_id": team["ids"]["rep_west"], "reason": "mine now"},
        headers=west_manager,
    )
    assert taken.status_code in (403, 404, 409), taken.text
    assert await rep_of(member["id"]) is None
    still = (await client.get("/api/v1/handovers", headers=team["headers"]["manager"])).json()
    assert [q["member_id"] for q in still] == [member["id"]]


async def test_another_departments_manager_cannot_open_a_handover_member(
    client, admin, team, bearer
):
    """A manager sees the department's members and the pool; a member waiting in another
    department's handover queue is neither (GET /pool leaves it out either)."""
    west_manager = await bearer("manager", username="mgr_west", department="west")
    member = await enrol(client, team["headers"]["rep"], name="Book Member")
    left = await client.patch(
        f"/api/v1/staff/{team['ids']['rep_east']}", json={"active": False}, headers=admin
    )
    assert left.status_code == 200, left.text
    pool = (await client.get("/api/v1/pool", headers=west_manager)).json()
    assert member["id"] not in {p["member_id"] for p in pool}
    for url in (f"/api/v1/members/{member['id']}", f"/api/v1/members/{member['id']}/brief"):
        seen = await client.get(url, headers=west_manager)
        assert seen.status_code == 404, (url, seen.text)


async def test_a_rep_who_moves_department_cannot_get_the_old_members_back(
    client, admin, team, bearer
):
    """ "Never back to the rep who left", also by transfer: a rep who moves department
    cannot take the old customers along through the new manager."""
    west_manager = await bearer("manager", username="mgr_west", department="west")
    member = await enrol(client, team["headers"]["rep"], name="Follows The Rep")
    moved = await client.patch(
        f"/api/v1/staff/{team['ids']['rep_east']}", json={"department": "west"}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    queue = (await client.get("/api/v1/handovers", headers=team["headers"]["manager"])).json()
    assert [q["member_id"] for q in queue] == [member["id"]]
    back = await client.put(
        f"/api/v1/members/{member['id']}/assignment",
        json={"rep_id": team["ids"]["rep_east"], "reason": "stays with me"},
        headers=west_manager,
    )
    assert back.status_code in (403, 404, 409), back.text
    assert await rep_of(member["id"]) is None


# --- follow-up tasks after the member changed hands ------------------------------------------


async def test_tasks_list_only_the_reps_current_members(client, admin, team):
    """A rep sees own members only: after a transfer the member's open follow-ups are the
    new rep's tasks at once, not at the next morning's planning."""
    member = await enrol(client, team["headers"]["rep"], name="Moved Member")
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE members SET registered_at = now() - interval '120 days' WHERE id = $1::uuid",
            member["id"],
        )
    run = await follow_ups.plan_follow_ups()
    assert run.created >= 1
    before = (await client.get("/api/v1/tasks", headers=team["headers"]["rep"])).json()
    assert [t["member_id"] for t in before] == [member["id"]]

    moved = await client.put(
        f"/api/v1/members/{member['id']}/assignment",
        json={"rep_id": team["ids"]["rep_east2"], "reason": "rebalance"},
        headers=team["headers"]["manager"],
    )
    assert moved.status_code == 200, moved.text
    old_rep = (await client.get("/api/v1/tasks", headers=team["headers"]["rep"])).json()
    assert [t["member_id"] for t in old_rep] == [], old_rep
    new_rep = (await client.get("/api/v1/tasks", headers=team["headers"]["rep2"])).json()
    assert [t["member_id"] for t in new_rep] == [member["id"]]


# --- protection period ------------------------------------------------------------------------


async def test_a_contact_after_the_protection_month_does_not_block_take_back(client, admin, team):
    """ "A new assignment is protected for one month; with no service record in that month,
    the manager may take it back": a contact logged after the month does not block it."""
    member = await enrol(client, team["headers"]["rep"], name="Neglected")
    await backdate_assignment(member["id"], datetime.now(UTC) - timedelta(days=45))
    late_visit = await client.post(
        f"/api/v1/members/{member['id']}/contacts",
        json={"kind": "call", "channel": "phone", "outcome": "finally called"},
        headers=team["headers"]["rep"],
    )
    assert late_visit.status_code == 201, late_visit.text
    preview = (
        await client.get("/api/v1/reclaims/preview", headers=team["headers"]["manager"])
    ).json()
    assert ("Neglected", "protection") in [(p["name"], p["rule"]) for p in preview]
    taken = await client.post(
        f"/api/v1/members/{member['id']}/reclaim", headers=team["headers"]["manager"]
    )
    assert taken.status_code == 200, taken.text
    assert await rep_of(member["id"]) is None
