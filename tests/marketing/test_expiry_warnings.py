"""Points expiry warnings: members whose points expire within 30 days are told once per
member and expiry month, by their consented channel (a real SMTP server, a local SMS
endpoint) and in the portal inbox, in their language, with the count and the date; a rerun
sends nothing, and switched off nothing is sent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from babel.dates import format_date

from loyalty.auth import staff_principal
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import add_months, now
from loyalty.marketing import expiry
from tests.helpers.marketing import buy, consenting, enrol


async def lots_expire_at(member_id: str):
    async with db.connection() as conn:
        return await conn.fetchval(
            "SELECT max(expires_at) FROM points_lots WHERE member = $1", member_id
        )


async def inbox(member_id: str) -> list[dict]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM member_notifications WHERE member = $1 AND kind = 'points.expiring'",
            member_id,
        )
    return [dict(r) for r in rows]


def when_points_expire_soon():
    """A moment 20 days before points earned today expire (24 months on)."""
    return add_months(now(), 24) - timedelta(days=20)


@pytest.fixture
async def members(client, admin, pos):
    by_email = await enrol(
        client,
        admin,
        "Email Fan",
        email="fan@example.com",
        contact_preferences=consenting(["email"], ["email"]),
    )
    by_sms = await enrol(
        client,
        admin,
        "Text Fan",
        phone="+8613800000002",
        contact_preferences={**consenting(["sms"], ["sms"]), "language": "zh"},
    )
    no_consent = await enrol(
        client,
        admin,
        "Quiet One",
        email="quiet@example.com",
        contact_preferences={"channels": ["email"], "consents": []},
    )
    for member, amount in ((by_email, "1234.00"), (by_sms, "300.00"), (no_consent, "50.00")):
        await buy(client, pos, member["id"], amount)
    # Nothing expires for this one (no points at all).
    await enrol(
        client,
        admin,
        "New Fan",
        email="new@example.com",
        contact_preferences=consenting(["email"], ["email"]),
    )
    return by_email, by_sms, no_consent


async def test_warned_once_per_month_by_consented_channel_in_their_language(
    members, mailbox, sms, settings
):
    by_email, by_sms, no_consent = members
    at = when_points_expire_soon()
    assert await expiry.run(at=at) == 3

    # Email, English (no language chosen): how many points and by when.
    [mail] = mailbox.messages
    assert mail["To"] == "fan@example.com"
    assert mail["Subject"] == "Your points expire soon"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    day_en = format_date(
        (await lots_expire_at(by_email["id"])).astimezone(settings.tz).date(),
        "medium",
        locale="en_US",
    )
    assert f"1,234 of your points expire by {day_en}." in text
    assert "/unsubscribe/" in text and "积分" not in text

    # Text message, Chinese (the member's choice).
    [message] = sms.received
    assert message["to"] == "+8613800000002"
    day_zh = format_date(
        (await lots_expire_at(by_sms["id"])).astimezone(settings.tz).date(),
        "medium",
        locale="zh_Hans_CN",
    )
    assert f"您有 300 积分将于 {day_zh} 前过期" in message["text"]
    assert "退订" in message["text"] and "points" not in message["text"]

    # Every one of them also in the portal inbox, in both languages; no consent: inbox only.
    for member in members:
        [entry] = await inbox(member["id"])
        assert entry["title"] == "Your points expire soon"
        assert entry["title_zh"] == "您的积分即将过期"
    [quiet] = await inbox(no_consent["id"])
    assert quiet["body"].startswith("50 of your points expire by")

    # A rerun, the next day, even a run at once with it: nobody is told twice.
    assert await expiry.run(at=at) == 0
    assert await expiry.run(at=at + timedelta(days=1)) == 0
    assert len(mailbox.messages) == 1 and len(sms.received) == 1
    assert [len(await inbox(m["id"])) for m in members] == [1, 1, 1]

    runs = await expiry.last_runs()
    assert [(r.warned, r.emails, r.texts, r.failed) for r in runs] == [
        (0, 0, 0, 0),
        (0, 0, 0, 0),
        (3, 1, 1, 0),
    ]


async def test_nobody_is_warned_long_before_or_after_expiry(members, mailbox, sms):
    assert await expiry.run(at=add_months(now(), 24) - timedelta(days=45)) == 0
    assert await expiry.run(at=add_months(now(), 24) + timedelta(days=1)) == 0
    assert mailbox.messages == [] and sms.received == []


async def test_switched_off_sends_nothing(members, mailbox, sms, make_staff):
    principal = await approving_principal(make_staff)
    current = await expiry.get_settings()
    update = expiry.ExpiryWarningSettingsUpdate(
        enabled=False,
        days_before=current.days_before,
        title_en=current.title_en,
        title_zh=current.title_zh,
        body_en=current.body_en,
        body_zh=current.body_zh,
    )
    saved = await expiry.update_settings(update, principal)
    assert saved.enabled is False and saved.updated_by == principal.label
    assert await expiry.run(at=when_points_expire_soon()) == 0
    assert mailbox.messages == [] and sms.received == []
    assert [await inbox(m["id"]) for m in members] == [[], [], []]
    [run] = await expiry.last_runs()
    assert run.enabled is False and run.warned == 0


async def approving_principal(make_staff):
    """A marketing manager: may approve offers, and so change the warnings."""
    user = await make_staff("mmanager", "manager", "marketing")
    return staff_principal(user.id, "mmanager", "manager", "marketing")


async def test_edited_text_in_both_languages_is_what_members_read(
    members, mailbox, sms, make_staff
):
    principal = await approving_principal(make_staff)
    await expiry.update_settings(
        expiry.ExpiryWarningSettingsUpdate(
            enabled=True,
            days_before=30,
            title_en="Use them or lose them",
            title_zh="积分快到期啦",
            body_en="{points} points go on {date}.",
            body_zh="{points} 积分于 {date} 到期。",
        ),
        principal,
    )
    await expiry.run(at=when_points_expire_soon())
    assert mailbox.messages[0]["Subject"] == "Use them or lose them"
    assert sms.received[0]["text"].startswith("积分快到期啦: 300 积分于 ")


async def test_settings_refuse_unknown_placeholders_and_need_approval(make_staff):
    principal = await approving_principal(make_staff)
    base = {
        "enabled": True,
        "days_before": 30,
        "title_en": "t",
        "title_zh": "t",
        "body_en": "{points} by {date}",
        "body_zh": "{points} {date}",
    }
    for field, text in (("body_en", "{point} by {date}"), ("title_zh", "到期 {date")):
        with pytest.raises(InvalidInput) as refused:
            await expiry.update_settings(
                expiry.ExpiryWarningSettingsUpdate(**{**base, field: text}), principal
            )
        assert refused.value.field == field
    assert (await expiry.get_settings()).updated_at is None  # nothing was saved
    user = await make_staff("marketer", "marketing")
    marketer = staff_principal(user.id, "marketer", "marketing", None)
    with pytest.raises(PermissionDenied):
        await expiry.update_settings(expiry.ExpiryWarningSettingsUpdate(**base), marketer)


async def test_a_failed_text_is_tried_again_by_the_next_run_and_sent_once(members, mailbox, sms):
    at = when_points_expire_soon()
    sms.fail = True  # the SMS gateway refuses
    assert await expiry.run(at=at) == 3
    assert sms.received == [] and len(mailbox.messages) == 1
    assert (await expiry.last_runs())[0].failed == 1

    sms.fail = False
    assert await expiry.run(at=at + timedelta(days=1)) == 0  # nobody new...
    [message] = sms.received  # ...but the failed text went out
    assert "您有 300 积分将于" in message["text"]
    latest = (await expiry.last_runs())[0]
    assert (latest.texts, latest.failed) == (1, 0)
    await expiry.run(at=at + timedelta(days=2))
    assert len(sms.received) == 1 and len(mailbox.messages) == 1
