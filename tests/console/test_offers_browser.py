"""The marketing journey in a real browser, English and Chinese: a marketer writes an offer
for the gold tier and submits it, the marketing manager approves it, the marketer sends it
and watches the progress while the worker runs the job, the email reaches the SMTP server,
a gold member sees the offer in the portal in Chinese and a normal member does not, and the
results page shows the delivery. Screenshots under test-artifacts/marketing/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loyalty.settings import get_settings
from tests.browser import browser_page, member_sign_in, staff_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.marketing import buy, consenting, enrol


async def shot(page, name: str) -> None:
    await browser_shot(page, "marketing", name)


def local(days: float) -> str:
    at = datetime.now(UTC) + timedelta(days=days)
    return at.astimezone(get_settings().tz).strftime("%Y-%m-%dT%H:%M")


async def run_worker(settings) -> None:
    from loyalty.worker import create_worker

    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    try:
        await worker.main()
    finally:
        await worker.close()


async def test_a_gold_offer_from_draft_to_results(
    served, client, admin, pos, make_staff, mailbox, settings
):
    await make_staff("mark", "marketing")
    await make_staff("mona", "manager", "marketing")
    email = consenting(["email"], ["email"])
    gold = await enrol(
        client, admin, "Gao Jin", email="gold@example.com", contact_preferences=email
    )
    await buy(client, pos, gold["id"], "25000.00")  # gold at once
    await enrol(client, admin, "Pu Tong", email="normal@example.com", contact_preferences=email)

    async with browser_page() as page:
        # The marketer writes the offer in English and Chinese for the gold tier.
        await staff_sign_in(page, served, "mark")
        await page.goto(f"{served}/console/offers")
        await page.get_by_role("link", name="Write an offer").click()
        await page.locator("#o-title_en").fill("Gold pu'er preview")
        await page.locator("#o-body_en").fill("Taste this year's pu'er first, 20% off.")
        await page.locator("#o-title_zh").fill("金卡普洱抢先品")
        await page.locator("#o-body_zh").fill("抢先品鉴今年的普洱，享八折。")
        await page.locator("#o-valid_from").fill(local(-1))
        await page.locator("#o-valid_until").fill(local(14))
        await page.get_by_role("checkbox", name="Gold").check()
        await page.get_by_role("button", name="Save the draft").click()
        await page.get_by_text("The offer is saved as a draft.").wait_for()
        offer_url = page.url.split("?")[0]
        offer_id = offer_url.rsplit("/", 1)[1]
        assert "金卡普洱抢先品" in await page.locator("#preview-sms-zh").inner_text()
        email_preview = page.frame_locator("#preview-email-en iframe.email-html")
        assert await email_preview.locator("h1").inner_text() == "Gold pu'er preview"
        await shot(page, "offer-draft")
        await page.get_by_role("button", name="Submit for approval").click()
        await page.get_by_text("The offer is submitted for approval.").wait_for()
        assert await page.locator("#offer-status").get_attribute("data-status") == "submitted"
        await page.get_by_role("button", name="Sign out").click()

        # The marketing manager approves it, in Chinese.
        await staff_sign_in(page, served, "mona")
        await page.goto(f"{served}/console/offers?lang=zh")
        await page.get_by_role("link", name="Gold pu'er preview").click()
        assert "待审批" in await page.locator("#offer-status").inner_text()
        await shot(page, "offer-approve-zh")
        await page.locator(f"form[action='/console/offers/{offer_id}/approve'] button").click()
        await page.get_by_text("优惠已批准，可以发送。").wait_for()
        await page.goto(f"{served}/console?lang=en")
        await page.get_by_role("button", name="Sign out").click()

        # The marketer sends it and watches the progress while the worker runs the job.
        await staff_sign_in(page, served, "mark")
        await page.goto(offer_url)
        await page.get_by_role("button", name="Send the offer").click()
        await page.get_by_text("The offer is being sent.").wait_for()
        assert await page.locator("#progress [data-live]").get_attribute("data-live") == "true"
        await shot(page, "offer-sending")
        await run_worker(settings)
        # The page's script polls the progress and reloads once the send is over.
        await page.locator("#offer-status[data-status='sent']").wait_for(timeout=15_000)
        assert (
            await page.locator("#progress tr[data-channel=email]").get_attribute("data-sent") == "1"
        )
        await shot(page, "offer-sent")

    # The email reached the SMTP server, for the gold member only.
    assert [m["To"] for m in mailbox.messages if "pu'er" in m["Subject"]] == ["gold@example.com"]

    async with browser_page() as page:
        # The gold member sees it in the portal, in Chinese; the normal member does not.
        await member_sign_in(page, served, mailbox, "gold@example.com")
        await page.goto(f"{served}/portal/messages?lang=zh")
        await page.get_by_text("金卡普洱抢先品", exact=False).first.wait_for()
        assert "优惠" in await page.locator("h1").inner_text()
        await shot(page, "portal-offer-zh")
        await page.goto(f"{served}/portal?lang=en")
    async with browser_page() as page:
        await member_sign_in(page, served, mailbox, "normal@example.com")
        await page.goto(f"{served}/portal/messages?lang=zh")
        assert "金卡普洱抢先品" not in await page.content()

    async with browser_page() as page:
        # The results: delivered by email, opened in the portal, by tier, with the chart.
        await staff_sign_in(page, served, "mark")
        await page.goto(f"{served}/console/offers/{offer_id}/results")
        assert await page.locator("#fact-delivered").inner_text() == "1"
        assert await page.locator("#fact-opened").inner_text() == "1"
        assert await page.locator("[data-result=email]").get_attribute("data-count") == "1"
        assert await page.locator("tr[data-tier=gold]").get_attribute("data-delivered") == "1"
        await shot(page, "offer-results")
        await page.goto(f"{served}/console/offers/{offer_id}/results?lang=zh")
        assert "按等级" in await page.content()
        await shot(page, "offer-results-zh")
