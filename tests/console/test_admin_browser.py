"""Administration journeys in a real browser, in English and Chinese: an admin merges a
duplicate after the preview, pauses a webhook and sends a delivery again, approves a
closure request. Screenshots under test-artifacts/admin/."""

from __future__ import annotations

import pytest

from loyalty.auth import member_principal
from loyalty.members import privacy
from loyalty.webhooks import service as webhooks
from tests.browser import browser_page, staff_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.purchases import purchase_body
from tests.helpers.webhooks import Receiver, deliver_outbox


async def shot(page, name: str) -> None:
    await browser_shot(page, "admin", name)


async def _enrol(client, admin, body: dict) -> dict:
    response = await client.post("/api/v1/members", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def test_an_admin_merges_a_duplicate_after_the_preview(
    served, client, admin, pos, make_staff
):
    await make_staff("ada", "admin")
    survivor = await _enrol(client, admin, {"name": "Li Na", "phone": "+8613900000011"})
    duplicate = await _enrol(client, admin, {"name": "Li Na", "email": "lina@example.com"})
    await client.post("/api/v1/purchases", json=purchase_body(duplicate["id"]), headers=pos)
    second = await _enrol(client, admin, {"name": "王芳", "phone": "+8613900000012"})
    second_dup = await _enrol(client, admin, {"name": "王芳", "email": "wangfang@example.com"})

    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await page.goto(f"{served}/console/members/{survivor['id']}")
        await page.get_by_role("link", name="Merge a duplicate into this member").click()
        await page.get_by_label("Duplicate (member number)").fill(duplicate["number"])
        await page.get_by_role("button", name="Preview the merge").click()
        await page.get_by_role("heading", name="What the merge does").wait_for()
        assert "lina@example.com" in await page.locator("[data-side=duplicate]").inner_text()
        assert "1 purchases move" in await page.locator("[data-move=purchases]").inner_text()
        await shot(page, "merge-preview")

        # Without the tick box the browser itself stops the form; the reason is typed.
        await page.get_by_label("Reason").fill("Same person, two cards")
        await page.get_by_label("I have checked both archives").check()
        await page.get_by_role("button", name="Merge", exact=True).click()
        await page.get_by_text("The duplicate is merged into the survivor.").wait_for()
        await shot(page, "merge-done")

        # The same in Chinese.
        await page.get_by_role("link", name="中文").click()
        await page.get_by_label("保留档案（会员号）").fill(second["number"])
        await page.get_by_label("重复档案（会员号）").fill(second_dup["number"])
        await page.get_by_role("button", name="预览合并").click()
        await page.get_by_role("heading", name="合并会做什么").wait_for()
        await shot(page, "merge-preview-zh")
        await page.get_by_label("原因").fill("同一个人")
        await page.get_by_label("我已核对两份档案").check()
        await page.get_by_role("button", name="合并", exact=True).click()
        await page.get_by_text("重复档案已合并到保留档案。").wait_for()

    merged = (await client.get(f"/api/v1/members/{duplicate['id']}", headers=admin)).json()
    assert merged["status"] == "merged" and merged["merged_into"] == survivor["id"]
    merged = (await client.get(f"/api/v1/members/{second_dup['id']}", headers=admin)).json()
    assert merged["status"] == "merged"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


async def test_an_admin_pauses_a_webhook_and_sends_a_delivery_again(
    served, client, admin, make_staff, receiver
):
    await make_staff("ada", "admin")
    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await page.goto(f"{served}/console/webhooks")
        await page.get_by_role("textbox", name="URL").fill(receiver.url)
        await page.get_by_label("member.enrolled").check()
        await page.get_by_label("Description").fill("CRM sync")
        await page.get_by_role("button", name="Subscribe", exact=True).click()
        await page.get_by_text("shown once").wait_for()
        await shot(page, "webhook-subscribed")

        receiver.fail_next = 1
        await _enrol(client, admin, {"name": "Chen"})
        await deliver_outbox()
        await webhooks.send_due()  # the receiver answers 500: one failed attempt

        await page.get_by_role("link", name=receiver.url).click()
        await page.get_by_role("button", name="Pause").click()
        await page.get_by_text("The subscriber is paused").wait_for()
        assert await page.locator("li[data-attempt]").count() == 1
        await page.locator("tr[data-delivery]").get_by_role("button", name="Send again").click()
        await page.get_by_text("The delivery is sent again in a moment.").wait_for()
        assert await webhooks.send_due() == 0  # paused: it waits
        await page.get_by_role("button", name="Resume").click()
        await page.get_by_text("The subscriber is active again").wait_for()
        assert await webhooks.send_due() == 1
        await page.reload()
        assert await page.locator("li[data-attempt]").count() == 2
        assert await page.locator("tr[data-status=delivered]").count() == 1
        await shot(page, "webhook-deliveries")

        await page.get_by_role("link", name="中文").click()
        await page.get_by_role("heading", name="投递").wait_for()
        await shot(page, "webhook-deliveries-zh")
    assert len(receiver.received) == 2


async def test_an_admin_approves_a_closure_request(served, client, admin, make_staff):
    await make_staff("ada", "admin")
    member = await _enrol(client, admin, {"name": "Zhang Wei", "email": "zw@example.com"})
    other = await _enrol(client, admin, {"name": "刘洋", "email": "ly@example.com"})
    for m, reason in ((member, "moving abroad"), (other, "不再需要")):
        await privacy.request_closure(member_principal(m["id"], m["number"]), reason)

    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await page.get_by_role("link", name="Administration").click()
        await page.get_by_role("link", name="Closure requests").click()
        row = page.locator("tr[data-request]", has_text="moving abroad")
        await shot(page, "closure-requests")
        await row.get_by_label("Erase this member's personal data").check()
        await row.get_by_role("button", name="Approve and erase").click()
        await page.get_by_text("The request is approved").wait_for()
        assert await page.locator("tr[data-request]").count() == 1

        await page.get_by_role("link", name="中文").click()
        row = page.locator("tr[data-request]", has_text="不再需要")
        await shot(page, "closure-requests-zh")
        await row.get_by_role("button", name="拒绝").click()
        await page.get_by_text("申请已拒绝。").wait_for()

    erased = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert erased["name"].startswith("Erased member") and erased["email"] is None
    kept = (await client.get(f"/api/v1/members/{other['id']}", headers=admin)).json()
    assert kept["name"] == "刘洋"


async def test_an_admin_runs_a_job_now_and_reads_the_tiers(served, make_staff, settings):
    from loyalty.worker import create_worker

    await make_staff("ada", "admin")
    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await page.goto(f"{served}/console/jobs")
        row = page.locator("tr[data-job=evaluate_tiers]")
        await row.get_by_role("button", name="Run evaluate_tiers now").click()
        await page.get_by_text("The job is queued").wait_for()
        worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
        try:
            await worker.main()
        finally:
            await worker.close()
        await page.reload()
        assert await row.locator("[data-outcome=ok]").count() == 1
        await shot(page, "jobs")
        await page.get_by_role("link", name="中文").click()
        await shot(page, "jobs-zh")
        await page.goto(f"{served}/console/tiers")
        await page.get_by_role("heading", name="定级设置").wait_for()
        await shot(page, "tiers-zh")
