"""The marketing workspace pages: composing offers (errors under their field, in the page's
language, nothing saved), preview per channel, submit, approval and its refusals, send back,
a double send that sends once, the voucher CSV report, results and automatic offers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from loyalty.settings import get_settings
from tests.helpers.console import sign_in
from tests.helpers.marketing import consenting, enrol
from tests.helpers.pages import csrf_from


def local(days: float) -> str:
    at = datetime.now(UTC) + timedelta(days=days)
    return at.astimezone(get_settings().tz).strftime("%Y-%m-%dT%H:%M")


def offer_form(**fields) -> dict:
    return {
        "title_en": "Gold tea week",
        "title_zh": "金卡茶叶周",
        "body_en": "Double points on tea for gold members.",
        "body_zh": "金卡会员茶叶双倍积分。",
        "valid_from": local(-1),
        "valid_until": local(7),
        "benefit": "none",
        **fields,
    }


@pytest.fixture
async def people(make_staff, make_client):
    """mark (marketing), mona and max (managers of marketing), ravi (a rep)."""
    await make_staff("mark", "marketing")
    await make_staff("mona", "manager", "marketing")
    await make_staff("max", "manager", "marketing")
    await make_staff("ravi", "rep", "east")
    return {name: await sign_in(make_client(), name) for name in ("mark", "mona", "max", "ravi")}


async def post(browser, url: str, data: dict, page_url: str, **headers):
    page = await browser.get(page_url)
    return await browser.post(
        url, data={**data, "_csrf_token": csrf_from(page.text)}, headers=headers or None
    )


async def create(browser, **fields) -> str:
    new = await browser.get("/console/offers/new")
    form_id = re.search(r'name="form_id" value="([^"]+)"', new.text).group(1)
    made = await browser.post(
        "/console/offers",
        data={**offer_form(**fields), "form_id": form_id, "_csrf_token": csrf_from(new.text)},
    )
    assert made.status_code == 303, made.text[-2000:]
    return made.headers["location"].split("/console/offers/")[1].split("?")[0]


async def run_worker(settings) -> None:
    from loyalty.worker import create_worker

    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    try:
        await worker.main()
    finally:
        await worker.close()
    assert worker.jobs_failed == 0


async def test_bad_input_shows_under_its_field_in_the_pages_language_and_saves_nothing(
    people, client, admin
):
    mark = people["mark"]
    empty_title = await post(
        mark, "/console/offers", offer_form(title_en=""), "/console/offers/new"
    )
    assert empty_title.status_code == 422
    html = empty_title.text
    assert re.search(r'id="o-title_en"[^>]*aria-invalid="true"', html)
    assert '<p class="field-error" id="title_en-error">is required</p>' in html
    assert "Double points on tea for gold members." in html  # what was typed stays

    backwards = await post(
        mark,
        "/console/offers",
        offer_form(valid_from=local(3), valid_until=local(2)),
        "/console/offers/new",
        **{"Accept-Language": "zh-CN"},
    )
    assert backwards.status_code == 422
    zh = backwards.text
    error = re.search(r'<p class="field-error" id="valid_until-error">([^<]+)</p>', zh).group(1)
    assert error != "must be after valid_from" and re.search(r"[\u4e00-\u9fff]", error)
    assert 'value="金卡茶叶周"' in zh

    no_multiplier = await post(
        mark, "/console/offers", offer_form(benefit="bonus_points"), "/console/offers/new"
    )
    assert no_multiplier.status_code == 422
    assert 'id="bonus_multiplier-error"' in no_multiplier.text
    listed = await client.get("/api/v1/offers", headers=admin)
    assert listed.json() == []  # nothing saved


async def test_a_double_submitted_new_offer_is_saved_once_and_previewed(people, client, admin):
    mark = people["mark"]
    new = await mark.get("/console/offers/new")
    form_id = re.search(r'name="form_id" value="([^"]+)"', new.text).group(1)
    data = {**offer_form(target_tiers="gold"), "form_id": form_id}
    data["_csrf_token"] = csrf_from(new.text)
    first = await mark.post("/console/offers", data=data)
    second = await mark.post("/console/offers", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert len((await client.get("/api/v1/offers", headers=admin)).json()) == 1

    page = await mark.get(first.headers["location"])
    assert page.status_code == 200
    html = page.text
    assert 'data-status="draft"' in html and "The offer is saved as a draft." in html
    # Each channel as a member reading English, then one reading Chinese, will see it.
    portal = html.split('id="preview-portal-en"')[1].split("</article>")[0]
    assert "Gold tea week" in portal and "金卡茶叶周" not in portal
    portal_zh = html.split('id="preview-portal-zh"')[1].split("</article>")[0]
    assert "金卡茶叶周" in portal_zh and "金卡会员茶叶双倍积分。" in portal_zh
    sms = html.split('id="preview-sms-en"')[1].split("</article>")[0]
    assert "Gold tea week" in sms and "GSM-7" in sms and 'data-sms-parts="' in sms
    sms_zh = html.split('id="preview-sms-zh"')[1].split("</article>")[0]
    assert "金卡茶叶周" in sms_zh and "UCS-2" in sms_zh
    email = html.split('id="preview-email-en"')[1].split("</article>")[0]
    assert "srcdoc=" in email and "&lt;h1&gt;Gold tea week" in email
    email_zh = html.split('id="preview-email-zh"')[1].split("</article>")[0]
    assert "&lt;h1&gt;金卡茶叶周" in email_zh and "退订" in email_zh


async def test_a_marketer_cannot_approve_and_a_manager_never_approves_their_own(
    people, client, admin
):
    await enrol(client, admin, "Someone")
    offer_id = await create(people["mark"])
    url = f"/console/offers/{offer_id}"
    mark_page = (await people["mark"].get(url)).text
    assert f'action="{url}/approve"' not in mark_page
    refused = await post(people["mark"], f"{url}/approve", {}, url)
    assert refused.status_code == 403
    assert (await people["ravi"].get(url)).status_code == 403
    assert (await people["ravi"].get("/console/offers")).status_code == 403

    own = await create(people["mona"], title_en="Mona's own")
    own_page = (await people["mona"].get(f"/console/offers/{own}")).text
    assert (
        'id="own-offer"' in own_page and f'action="/console/offers/{own}/approve"' not in own_page
    )
    refused = await post(
        people["mona"], f"/console/offers/{own}/approve", {}, f"/console/offers/{own}"
    )
    assert refused.status_code == 403 and "author" in refused.text

    submitted = await post(people["mark"], f"{url}/submit", {}, url)
    assert submitted.status_code == 303
    again = await post(people["mark"], f"{url}/submit", {}, url)  # pressed twice: same page
    assert again.status_code == 303
    page = (await people["mark"].get(url)).text
    assert 'id="offer-status" data-status="submitted"' in page and "Awaiting approval" in page

    approved = await post(people["mona"], f"{url}/approve", {}, url)
    assert approved.status_code == 303
    result = (await client.get(f"/api/v1/offers/{offer_id}", headers=admin)).json()
    assert result["status"] == "approved" and result["approved_by"] == "staff:mona"


async def test_approval_refusals_show_the_reason_in_both_languages(people, client, admin):
    await enrol(client, admin, "Someone")
    voucher = await create(people["mark"], benefit="voucher")
    url = f"/console/offers/{voucher}"
    page = (await people["mona"].get(url)).text
    assert "the voucher pool is empty" in page.split('id="approval-problem"')[1][:300]
    refused = await post(people["mona"], f"{url}/approve", {}, url)
    assert refused.status_code == 409 and "the voucher pool is empty" in refused.text
    zh = await post(people["mona"], f"{url}/approve", {}, url, **{"Accept-Language": "zh-CN"})
    assert zh.status_code == 409 and "the voucher pool is empty" not in zh.text
    assert "券码池为空" in zh.text

    nobody = await create(people["mark"], target_tiers="gold")
    refused = await post(people["mona"], f"/console/offers/{nobody}/approve", {}, url)
    assert refused.status_code == 409 and "reaches no member" in refused.text
    status = (await client.get(f"/api/v1/offers/{nobody}", headers=admin)).json()["status"]
    assert status == "draft"


async def test_send_back_with_a_comment(people, client, admin):
    await enrol(client, admin, "Someone")
    offer_id = await create(people["mark"])
    url = f"/console/offers/{offer_id}"
    await post(people["mark"], f"{url}/submit", {}, url)
    empty = await post(people["mona"], f"{url}/send-back", {"comment": "  "}, url)
    assert empty.status_code == 422 and 'id="comment-error"' in empty.text
    back = await post(people["mona"], f"{url}/send-back", {"comment": "Name the teas."}, url)
    assert back.status_code == 303
    page = (await people["mark"].get(url)).text
    assert 'data-status="draft"' in page
    assert '<span id="review-comment">Name the teas.</span>' in page
    changed = await post(people["mark"], url, offer_form(body_en="Oolong and pu'er."), url)
    assert changed.status_code == 303
    offer = (await client.get(f"/api/v1/offers/{offer_id}", headers=admin)).json()
    assert offer["body_en"] == "Oolong and pu'er." and offer["status"] == "draft"


async def test_a_double_send_sends_once_with_progress_and_results(
    people, client, admin, mailbox, settings
):
    for name in ("Ann", "Bob"):
        await enrol(
            client,
            admin,
            name,
            email=f"{name.lower()}@example.com",
            contact_preferences=consenting(["email"], ["email"]),
        )
    offer_id = await create(people["mark"])
    url = f"/console/offers/{offer_id}"
    await post(people["mark"], f"{url}/submit", {}, url)
    await post(people["mona"], f"{url}/approve", {}, url)
    for _ in range(2):
        sent = await post(people["mark"], f"{url}/send", {}, url)
        assert sent.status_code == 303 and sent.headers["location"].endswith("saved=queued")
    queued = (await people["mark"].get(f"{url}?saved=queued")).text
    assert "/progress?queued=1" in queued
    fragment = (await people["mark"].get(f"{url}/progress?queued=1")).text
    assert 'data-live="true"' in fragment

    await run_worker(settings)
    assert sorted(m["To"] for m in mailbox.messages) == ["ann@example.com", "bob@example.com"]
    again = await post(people["mark"], f"{url}/send", {}, url)  # after it was sent: no resend
    assert again.status_code == 303
    await run_worker(settings)
    assert len(mailbox.messages) == 2

    fragment = (await people["mark"].get(f"{url}/progress")).text
    assert 'data-live="false"' in fragment and 'data-status="sent"' in fragment
    assert 'data-channel="email" data-sent="2"' in fragment

    results = await people["mona"].get(f"{url}/results")
    assert results.status_code == 200
    assert 'data-result="email" data-count="2"' in results.text
    assert 'data-tier="normal" data-audience="2" data-delivered="2"' in results.text
    zh = await people["mona"].get(f"{url}/results", headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 200 and "Opened in the portal" not in zh.text
    assert (await people["ravi"].get(f"{url}/results")).status_code == 403


async def test_a_voucher_csv_reports_each_skipped_line(people, client, admin):
    offer_id = await create(people["mark"], benefit="voucher")
    url = f"/console/offers/{offer_id}"
    page = await people["mark"].get(url)
    content = b"code\nA-100\n\nA-101\nA-100\nhas space\nA-102\n"
    response = await people["mark"].post(
        f"{url}/vouchers",
        data={"_csrf_token": csrf_from(page.text)},
        files={"file": ("codes.csv", content, "text/csv")},
    )
    assert response.status_code == 200, response.text[-1500:]
    html = response.text
    assert 'data-imported="3"' in html
    assert re.search(r'<tr data-line="3">.*?blank line', html, re.S)
    assert re.search(r'<tr data-line="5">.*?A-100.*?repeats line 2', html, re.S)
    assert re.search(r'<tr data-line="6">.*?not a code', html, re.S)

    page = await people["mark"].get(url)
    again = await people["mark"].post(
        f"{url}/vouchers",
        data={"_csrf_token": csrf_from(page.text)},
        files={"file": ("more.csv", b"A-102\nA-103\n", "text/csv")},
    )
    assert 'data-imported="1"' in again.text
    assert re.search(r'<tr data-line="1">.*?A-102.*?already in the pool', again.text, re.S)
    offer = (await client.get(f"/api/v1/offers/{offer_id}", headers=admin)).json()
    assert offer["vouchers_left"] == 4

    page = await people["mark"].get(url)
    empty = await people["mark"].post(
        f"{url}/vouchers",
        data={"_csrf_token": csrf_from(page.text)},
        files={"file": ("empty.csv", b"\n\n", "text/csv")},
        headers={"Accept-Language": "zh-CN"},
    )
    assert empty.status_code == 422 and 'id="file-error"' in empty.text
    assert "the file holds no codes" not in empty.text


async def test_automatic_offers_show_their_schedule_and_last_runs(people, client, admin):
    from loyalty.marketing import automatic

    now = datetime.now(UTC).astimezone(get_settings().tz)
    await enrol(client, admin, "Birthday Person", birthday=f"1990-{now.month:02d}-02")
    template = await create(
        people["mark"], auto_kind="birthday", title_en="Happy birthday", valid_until=local(300)
    )
    page = (await people["mark"].get("/console/automatic-offers")).text
    assert f'data-template="{template}" data-kind="birthday"' in page and "No runs yet." in page
    await post(people["mona"], f"/console/offers/{template}/approve", {}, "/console/offers")
    await automatic.run()
    page = (await people["mark"].get("/console/automatic-offers")).text
    assert f'data-period="{now.strftime("%Y-%m")}" data-audience="1"' in page
    assert "09:00" in page
    zh = await people["mark"].get("/console/automatic-offers", headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 200 and "Automatic offers" not in zh.text


async def test_cancel_before_sending_and_not_after(people, client, admin, settings, mailbox):
    await enrol(client, admin, "Someone")
    offer_id = await create(people["mark"])
    url = f"/console/offers/{offer_id}"
    for _ in range(2):  # pressed twice: the second finds it cancelled, same page
        cancelled = await post(people["mark"], f"{url}/cancel", {}, url)
        assert cancelled.status_code == 303
    page = (await people["mark"].get(url)).text
    assert 'data-status="cancelled"' in page and f'action="{url}/cancel"' not in page
    assert f'action="{url}/submit"' not in page

    sent = await create(people["mark"], title_en="Sent one")
    sent_url = f"/console/offers/{sent}"
    await post(people["mona"], f"{sent_url}/approve", {}, sent_url)
    await post(people["mark"], f"{sent_url}/send", {}, sent_url)
    await run_worker(settings)
    refused = await post(people["mark"], f"{sent_url}/cancel", {}, sent_url)
    assert refused.status_code == 409 and "cannot be cancelled" in refused.text
