"""Messages in the member's language: each message is stored in both languages and shown in
the member's chosen language, else the request's Accept-Language, else English, in the
member API and on the portal pages; staff replies are shown as written."""

from __future__ import annotations

from loyalty.events.jobs import deliver
from loyalty.events.tables import OutboxEvent
from tests.helpers.members import merge
from tests.helpers.pages import csrf_from
from tests.helpers.portal import enrol, sign_in, signed_in_browser
from tests.helpers.purchases import purchase_body


async def reach_silver(client, pos, member_id: str) -> None:
    """A purchase that lifts the member to Silver, and the tier news delivered."""
    body = purchase_body(member_id, ("TEA-1", 1, "5000.00", "general"))
    assert (await client.post("/api/v1/purchases", json=body, headers=pos)).status_code == 201
    for event in await OutboxEvent.select().where(OutboxEvent.topic == "tier.changed"):
        await deliver(event["id"])


async def titles(client, headers: dict[str, str], accept: str | None = None) -> list[str]:
    if accept:
        headers = {**headers, "Accept-Language": accept}
    response = await client.get("/api/v1/me/messages", headers=headers)
    assert response.status_code == 200, response.text
    return [m["title"] for m in response.json()]


async def test_messages_api_follows_the_chosen_language_else_accept_language(
    client, admin, pos, mailbox
):
    member = await enrol(client, admin)
    await reach_silver(client, pos, member["id"])
    me = await sign_in(client, mailbox, "chen@example.com")

    # No language chosen: the request's Accept-Language, else English.
    assert await titles(client, me, "zh-CN,zh;q=0.9,en;q=0.5") == ["欢迎成为白银会员"]
    assert await titles(client, me, "en-GB") == ["Welcome to Silver"]
    assert await titles(client, me) == ["Welcome to Silver"]
    body = (await client.get("/api/v1/me/messages", headers={**me, "Accept-Language": "zh"})).json()
    assert body[0]["body"] == "您的会员等级现为白银。请在会员门户查看您的权益。"

    # Chosen in the preferences: it wins over the browser's language.
    chosen = await client.put(
        "/api/v1/me/preferences",
        json={"channels": ["email"], "consents": [], "language": "zh"},
        headers=me,
    )
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["contact_preferences"]["language"] == "zh"
    assert await titles(client, me, "en-GB") == ["欢迎成为白银会员"]
    # Saving the preferences without a language keeps the one chosen.
    again = await client.put(
        "/api/v1/me/preferences", json={"channels": ["sms"], "consents": []}, headers=me
    )
    assert again.json()["contact_preferences"]["language"] == "zh"
    bad = await client.put(
        "/api/v1/me/preferences",
        json={"channels": [], "consents": [], "language": "fr"},
        headers=me,
    )
    assert bad.status_code == 400 and "language" in bad.text


async def test_a_staff_reply_is_shown_as_written(client, admin, mailbox):
    member = await enrol(
        client,
        admin,
        contact_preferences={"channels": ["email"], "consents": [], "language": "en"},
    )
    sent = await client.post(
        f"/api/v1/members/{member['id']}/messages",
        json={"channel": "portal", "subject": "关于您的订单", "body": "已经发货。"},
        headers=admin,
    )
    assert sent.status_code == 201, sent.text
    me = await sign_in(client, mailbox, "chen@example.com")
    assert await titles(client, me, "en") == ["关于您的订单"]
    assert await titles(client, me, "zh") == ["关于您的订单"]


async def test_tier_message_in_chinese_on_the_chinese_portal_home(
    client, admin, pos, mailbox, make_client
):
    member = await enrol(client, admin)
    await reach_silver(client, pos, member["id"])
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    home = await browser.get("/portal?lang=zh")
    assert "欢迎成为白银会员" in home.text and "Welcome to Silver" not in home.text
    english = await browser.get("/portal?lang=en")
    assert "Welcome to Silver" in english.text

    # The switch is the member's choice, kept on the archive: a new browser with English
    # Accept-Language and no remembered switch still shows the portal in Chinese.
    await browser.get("/portal/messages?lang=zh")
    archive = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert archive["contact_preferences"]["language"] == "zh"
    fresh = await signed_in_browser(make_client, mailbox, "chen@example.com", address="10.7.7.8")
    messages = await fresh.get("/portal/messages", headers={"Accept-Language": "en-GB"})
    assert '<html lang="zh-Hans">' in messages.text and "欢迎成为白银会员" in messages.text


async def test_the_preferences_page_sets_the_language_of_emails_and_texts(
    client, admin, mailbox, make_client
):
    member = await enrol(client, admin)
    browser = await signed_in_browser(make_client, mailbox, "chen@example.com")
    page = await browser.get("/portal/preferences", headers={"Accept-Language": "en"})
    assert 'name="language" value="en" checked' in page.text  # none chosen: the page's
    saved = await browser.post(
        "/portal/preferences",
        data={
            "channels": "email",
            "consents": "email",
            "language": "zh",
            "_csrf_token": csrf_from(page.text),
        },
    )
    assert saved.status_code == 200 and 'name="language" value="zh" checked' in saved.text
    archive = (await client.get(f"/api/v1/members/{member['id']}", headers=admin)).json()
    assert archive["contact_preferences"]["language"] == "zh"


async def test_a_long_staff_message_reaches_the_inbox_whole(client, admin, mailbox):
    member = await enrol(client, admin)
    long_body = "茶" * 5000  # the longest a staff message may be
    sent = await client.post(
        f"/api/v1/members/{member['id']}/messages",
        json={"channel": "portal", "subject": "Your order", "body": long_body},
        headers=admin,
    )
    assert sent.status_code == 201, sent.text
    me = await sign_in(client, mailbox, "chen@example.com")
    [message] = (await client.get("/api/v1/me/messages", headers=me)).json()
    assert message["body"] == long_body


async def test_a_merge_keeps_the_language_either_archive_chose(client, admin):
    survivor = await enrol(client, admin, "Chen Jie", "chen@example.com")
    duplicate = await enrol(
        client,
        admin,
        "Chen J.",
        "chen.j@example.com",
        contact_preferences={"channels": ["sms"], "consents": [], "language": "zh"},
    )
    await merge(client, admin, survivor["id"], duplicate["id"])
    kept = (await client.get(f"/api/v1/members/{survivor['id']}", headers=admin)).json()
    assert kept["contact_preferences"]["language"] == "zh"
    assert kept["contact_preferences"]["channels"] == ["sms"]
