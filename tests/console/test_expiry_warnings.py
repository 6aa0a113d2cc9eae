"""The expiry warnings page over HTTP: who may see and change it, errors under their field at
422 with the typed text kept and nothing saved, and a saved change the next run uses."""

from __future__ import annotations

from loyalty.marketing import expiry
from tests.helpers.console import post_form, sign_in

URL = "/console/expiry-warnings"
FORM = {
    "enabled": "on",
    "days_before": "21",
    "title_en": "Points ending soon",
    "title_zh": "积分快到期",
    "body_en": "{points} points end on {date}.",
    "body_zh": "{points} 积分于 {date} 到期。",
    "action": "save",
}


async def test_marketing_views_a_manager_changes_others_are_refused(make_client, make_staff):
    await make_staff("rita", "rep", "east")
    await make_staff("mark", "marketing")
    await make_staff("mona", "manager", "marketing")

    rep = await sign_in(make_client("10.8.0.1"), "rita")
    assert (await rep.get(URL)).status_code == 403

    marketer = await sign_in(make_client("10.8.0.2"), "mark")
    page = await marketer.get(URL)
    assert page.status_code == 200 and "Save the settings" not in page.text
    previewed = await post_form(marketer, URL, {**FORM, "action": "preview"}, URL)
    assert previewed.status_code == 200 and "1,200 points end on" in previewed.text
    refused = await post_form(marketer, URL, FORM, URL)
    assert refused.status_code == 403
    assert (await expiry.get_settings()).updated_at is None

    manager = await sign_in(make_client("10.8.0.3"), "mona")
    saved = await post_form(manager, URL, FORM, URL)
    assert saved.status_code == 303 and saved.headers["location"] == f"{URL}?saved=settings"
    twice = await post_form(manager, URL, FORM, URL)  # a double submit saves the same
    assert twice.status_code == 303
    stored = await expiry.get_settings()
    assert (stored.days_before, stored.title_zh, stored.updated_by) == (
        21,
        "积分快到期",
        "staff:mona",
    )


async def test_errors_show_under_their_field_in_the_pages_language(make_client, make_staff):
    await make_staff("mona", "manager", "marketing")
    manager = await sign_in(make_client("10.8.0.3"), "mona")
    wrong = await post_form(manager, URL, {**FORM, "body_zh": "{积分} 到期"}, URL)
    assert wrong.status_code == 422
    assert 'id="body_zh-error"' in wrong.text and "{积分} 到期" in wrong.text
    too_many = await post_form(manager, f"{URL}?lang=zh", {**FORM, "days_before": "120"}, URL)
    assert too_many.status_code == 422 and 'id="days_before-error"' in too_many.text
    assert "太大" in too_many.text or "过大" in too_many.text
    empty = await post_form(manager, URL, {**FORM, "title_en": "  "}, URL)
    assert empty.status_code == 422 and 'id="title_en-error"' in empty.text
    assert (await expiry.get_settings()).updated_at is None
