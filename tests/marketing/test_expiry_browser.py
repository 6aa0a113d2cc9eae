"""In a real browser: marketing edits the points expiry warnings (a wrong placeholder is shown
under its field, the preview shows typed text, saving needs a marketing manager) in English
and Chinese; a Chinese member reads an offer and an expiry warning in Chinese in the portal
inbox on a phone. Screenshots under test-artifacts/marketing/."""

from __future__ import annotations

from datetime import timedelta

from loyalty.infrastructure.clock import add_months, now
from loyalty.marketing import delivery, expiry
from tests.browser import browser_page, staff_sign_in
from tests.browser import shot as browser_shot
from tests.helpers.marketing import approve, buy, consenting, enrol, make_offer


async def shot(page, name: str) -> None:
    await browser_shot(page, "marketing", name)


async def test_marketing_edits_the_expiry_warnings_in_english_and_chinese(
    served, client, admin, pos, make_staff, mailbox
):
    await make_staff("mona", "manager", "marketing")
    await make_staff("mark", "marketing")
    member = await enrol(
        client,
        admin,
        "Email Fan",
        email="fan@example.com",
        contact_preferences=consenting(["email"], ["email"]),
    )
    await buy(client, pos, member["id"], "800.00")
    await expiry.run(at=add_months(now(), 24) - timedelta(days=10))

    async with browser_page() as page:
        await staff_sign_in(page, served, "mona")
        await page.goto(f"{served}/console/expiry-warnings")
        await page.get_by_role("heading", name="Points expiry warnings").wait_for()
        runs = page.locator("table tbody tr")
        assert await runs.count() == 1 and "switched on" in await runs.first.inner_text()

        # A placeholder that does not exist: shown under its field, nothing saved.
        body = page.get_by_label("Message (English)")
        await body.fill("{pts} points expire by {date}.")
        await page.get_by_role("button", name="Save the settings").click()
        error = page.locator("#body_en-error")
        await error.wait_for()
        assert "may only use the placeholders" in await error.inner_text()
        assert await body.input_value() == "{pts} points expire by {date}."
        assert (await expiry.get_settings()).updated_at is None

        # The preview shows the typed text before it is saved.
        await body.fill("{points} points end on {date}: treat yourself!")
        await page.get_by_role("button", name="Preview").click()
        preview = page.locator('[data-language="en"]')
        await preview.get_by_text("1,200 points end on").wait_for()
        await page.get_by_role("button", name="Save the settings").click()
        await page.get_by_text("The expiry warning settings are saved.").wait_for()
        assert (await expiry.get_settings()).body_en.startswith("{points} points end on")
        await shot(page, "expiry-warnings")

        await page.goto(f"{served}/console/expiry-warnings?lang=zh")
        await page.get_by_role("heading", name="积分到期提醒").wait_for()
        assert "您有 1,200 积分将于" in await page.locator('[data-language="zh"]').inner_text()
        assert "已开启" in await page.locator("table tbody").inner_text()
        await shot(page, "expiry-warnings-zh")

    # Without offers:approve: the page and the preview, no saving.
    async with browser_page() as page:
        await staff_sign_in(page, served, "mark")
        await page.goto(f"{served}/console/expiry-warnings")
        await page.get_by_role("button", name="Preview").wait_for()
        assert await page.get_by_role("button", name="Save the settings").count() == 0


async def test_a_chinese_member_reads_an_offer_and_an_expiry_warning_in_chinese(
    served, client, admin, author, pos, mailbox, sms
):
    member = await enrol(
        client,
        admin,
        "Wang Fang",
        email="wang@example.com",
        phone="+8613800000009",
        contact_preferences={**consenting(["sms"], ["sms"]), "language": "zh"},
    )
    await buy(client, pos, member["id"], "640.00")
    offer = await make_offer(client, author)
    await approve(client, admin, offer["id"])
    await delivery.send_offer(offer["id"])
    await expiry.run(at=add_months(now(), 24) - timedelta(days=10))
    assert [m["text"].split(" ")[0] for m in sms.received] == ["秋茶周", "您的积分即将过期:"]

    async with browser_page() as page:
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"{served}/portal/sign-in")
        await page.get_by_label("Phone or email").first.fill("wang@example.com")
        await page.get_by_role("button", name="Send me a code").click()
        await page.get_by_label("Code", exact=True).fill(mailbox.last_code("wang@example.com"))
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{served}/portal")
        # Her language is stored: the portal speaks Chinese without a switch.
        await page.goto(f"{served}/portal/messages")
        content = await page.content()
        assert '<html lang="zh-Hans">' in content
        assert "秋茶周" in content and "茶叶双倍积分。" in content
        assert "您的积分即将过期" in content and "您有 640 积分将于" in content
        assert "Autumn tea week" not in content and "Your points" not in content
        await shot(page, "inbox-zh")
