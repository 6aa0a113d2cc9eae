"""The service desk and the manager pages over HTTP: requests with their clock, a reply
through the portal inbox, a logged resolution, one-box search; moving a member (access, bad
input beside the field, a double submit moves once), archive views, reps' levels and the
ownership rules."""

from __future__ import annotations

import asyncio
import re
from uuid import UUID

from loyalty.infrastructure import db
from tests.helpers.console import post_form, sign_in
from tests.helpers.portal import sign_in as member_sign_in


async def _request(client, mailbox, email: str, subject: str) -> str:
    headers = await member_sign_in(client, mailbox, email)
    sent = await client.post(
        "/api/v1/me/requests",
        json={"kind": "request", "subject": subject, "body": "Please call me back."},
        headers=headers,
    )
    assert sent.status_code == 201, sent.text
    return sent.json()["id"]


async def test_service_answers_a_request_and_the_member_reads_the_reply(
    client, make_client, make_staff, team, mailbox
):
    await make_staff("sam", "service")
    request_id = await _request(client, mailbox, "jie@example.com", "Change my address")
    late_id = await _request(client, mailbox, "fang@example.com", "Points missing")
    # Lin Fang's request came three days ago: past a normal member's 48 hours.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE contacts SET occurred_at = now() - interval '3 days' WHERE id = $1",
            UUID(late_id),
        )
    desk = await sign_in(make_client(), "sam")
    listing = await desk.get("/console/service/requests")
    assert listing.status_code == 200
    html = listing.text
    assert html.index(late_id) < html.index(request_id)  # soonest due first
    assert re.search(rf'data-request="{late_id}" data-status="open" class="overdue"', html)
    assert re.search(rf'data-request="{request_id}" data-status="open">', html)
    assert "within 48 h" in html
    assert "24 h overdue" in html and "48 h left" in html
    assert 'data-open="2"' in (await desk.get("/console/service")).text

    page_url = f"/console/service/requests/{request_id}"
    empty = await post_form(
        desk, f"{page_url}/reply", {"channel": "portal", "subject": "Re", "body": " "}, page_url
    )
    assert empty.status_code == 422
    assert 'id="body-error"' in empty.text and 'aria-invalid="true"' in empty.text
    no_consent = await post_form(
        desk, f"{page_url}/reply", {"channel": "sms", "subject": "Re", "body": "Hi"}, page_url
    )
    assert no_consent.status_code == 422 and 'id="channel-error"' in no_consent.text

    form = {"channel": "portal", "subject": "Re: Change my address", "body": "Done, thanks."}
    first, second = await asyncio.gather(
        post_form(desk, f"{page_url}/reply", form, page_url),
        post_form(desk, f"{page_url}/reply", form, page_url),
    )
    assert sorted([first.status_code, second.status_code]) == [303, 409]
    answered = await desk.get(f"{page_url}?saved=replied")
    assert 'data-status="answered"' in answered.text and "in time" in answered.text
    assert "Send the reply" not in answered.text

    member = await member_sign_in(client, mailbox, "jie@example.com")
    inbox = (await client.get("/api/v1/me/messages", headers=member)).json()
    assert [m["body"] for m in inbox].count("Done, thanks.") == 1

    resolved = await post_form(
        desk,
        f"/console/service/requests/{late_id}/resolve",
        {"outcome": "Points added by hand."},
        f"/console/service/requests/{late_id}",
    )
    assert resolved.status_code == 303
    done = (await desk.get("/console/service/requests?status=resolved")).text
    assert late_id in done and "late" in done
    assert request_id not in (await desk.get("/console/service/requests")).text
    zh = await desk.get("/console/service/requests", headers={"Accept-Language": "zh-CN"})
    assert "请求" in zh.text


async def test_the_desk_finds_any_member_but_a_manager_only_the_department(
    make_client, make_staff, team
):
    await make_staff("sam", "service")
    desk = await sign_in(make_client(), "sam")
    found = await desk.get("/console/service", params={"q": "Zhao"})
    assert found.status_code == 200 and "Zhao Lei" in found.text
    number = team["members"]["Zhao Lei"]["number"]
    by_number = await desk.get("/console/service", params={"q": number})
    assert "Zhao Lei" in by_number.text
    mia = await sign_in(make_client("10.3.3.3"), "mia")
    assert "Zhao Lei" not in (await mia.get("/console/service", params={"q": "Zhao"})).text
    ravi = await sign_in(make_client("10.4.4.4"), "ravi")
    assert (await ravi.get("/console/service")).status_code == 403


async def test_moving_a_member(make_client, team):
    chen = team["members"]["Chen Jie"]["id"]
    zhao = team["members"]["Zhao Lei"]["id"]
    rosa = str(team["staff"]["rosa"].id)
    mia = await sign_in(make_client(), "mia")
    url = f"/console/members/{chen}/move"
    assert f'href="{url}"' in (await mia.get(f"/console/members/{chen}")).text
    # Another department's member is not found, as in the API.
    assert (await mia.get(f"/console/members/{zhao}/move")).status_code == 404
    assert (
        await post_form(mia, f"/console/members/{zhao}/move", {"rep_id": rosa})
    ).status_code == 404
    # A reason is required, and shown beside its field; nothing moves.
    bad = await post_form(mia, url, {"rep_id": rosa, "reason": "  "}, url)
    assert bad.status_code == 422 and 'id="reason-error"' in bad.text
    assert f'value="{rosa}" selected' in bad.text
    unchosen = await post_form(mia, url, {"rep_id": "", "reason": "x"}, url)
    assert unchosen.status_code == 422 and 'id="rep_id-error"' in unchosen.text

    form = {"rep_id": rosa, "reason": "closer to the shop"}
    first = await post_form(mia, url, form, url)
    second = await post_form(mia, url, form, url)
    assert first.headers["location"].endswith("saved=moved")
    assert second.headers["location"].endswith("saved=unchanged")
    async with db.connection() as conn:
        periods = await conn.fetchval(
            "SELECT count(*) FROM assignments WHERE member = $1 AND rep = $2",
            UUID(chen),
            team["staff"]["rosa"].id,
        )
    assert periods == 1

    ravi = await sign_in(make_client("10.4.4.4"), "ravi")
    assert (await ravi.get(url)).status_code == 403
    refused = await post_form(ravi, url, {"rep_id": str(team["staff"]["ravi"].id), "reason": "x"})
    assert refused.status_code == 403

    views = await mia.get(f"/console/members/{chen}/views")
    assert views.status_code == 200 and 'data-viewer="mia"' in views.text


async def test_reps_levels_and_ownership_rules(make_client, team):
    mia = await sign_in(make_client(), "mia")
    page = (await mia.get("/console/team/reps")).text
    assert 'data-rep="ravi"' in page and 'data-rep="wei"' not in page
    ravi = team["staff"]["ravi"].id
    saved = await post_form(mia, f"/console/team/reps/{ravi}/level", {"level": "senior"})
    assert saved.status_code == 303
    assert 'data-rep="ravi" data-level="senior"' in (await mia.get("/console/team/reps")).text
    wei = team["staff"]["wei"].id
    other = await post_form(mia, f"/console/team/reps/{wei}/level", {"level": "senior"})
    assert other.status_code == 404
    wrong = await post_form(mia, f"/console/team/reps/{ravi}/level", {"level": "boss"})
    assert wrong.status_code == 422

    assert (await mia.get("/console/rep-settings")).status_code == 403
    ada = await sign_in(make_client("10.8.8.8"), "ada")
    form = (await ada.get("/console/rep-settings")).text
    values = dict(
        re.findall(r'name="(\w+)" type="number" inputmode="numeric" required value="(\d+)"', form)
    )
    assert values["protection_days"] == "30"
    bad = await post_form(ada, "/console/rep-settings", {**values, "warning_days": "99"})
    assert bad.status_code == 422 and 'id="warning_days-error"' in bad.text
    good = await post_form(
        ada,
        "/console/rep-settings",
        {**values, "protection_days": "45", "min_level__gold": "senior"},
    )
    assert good.status_code == 303
    rules = await ada.get("/console/rep-settings")
    assert 'id="protection_days" name="protection_days" type="number"' in rules.text
    assert 'value="45"' in rules.text


async def test_a_manager_reaches_only_the_departments_requests(
    client, make_client, make_staff, team, mailbox
):
    west = await _request(client, mailbox, "lei@example.com", "West side request")
    east = await _request(client, mailbox, "jie@example.com", "East side request")
    mia = await sign_in(make_client(), "mia")
    listing = (await mia.get("/console/service/requests")).text
    assert east in listing and west not in listing
    url = f"/console/service/requests/{west}"
    assert (await mia.get(url)).status_code == 404
    form = {"channel": "portal", "subject": "Hi", "body": "Hello"}
    assert (await post_form(mia, f"{url}/reply", form)).status_code == 404
    assert (await post_form(mia, f"{url}/resolve", {"outcome": "done"})).status_code == 404
    wu = await sign_in(make_client("10.2.2.2"), "wu")
    assert 'data-status="open"' in (await wu.get(url)).text  # untouched
