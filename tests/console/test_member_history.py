"""A member's history page: archive changes with old and new values, the member's
referrals, and recording who referred a member, with errors under the code field."""

from __future__ import annotations

from tests.helpers.console import post_form, sign_in
from tests.helpers.pages import csrf_from


async def test_a_rep_reads_the_history_and_records_the_referrer(client, admin, make_client, team):
    chen = team["members"]["Chen Jie"]
    lin = team["members"]["Lin Fang"]
    changed = await client.patch(
        f"/api/v1/members/{chen['id']}", json={"notes": "prefers oolong"}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    browser = await sign_in(make_client(), "ravi")
    page = f"/console/members/{chen['id']}/history"
    shown = await browser.get(page)
    assert shown.status_code == 200
    assert "prefers oolong" in shown.text

    # A code nobody has: the error under the field, in Chinese on a Chinese page, nothing saved.
    wrong = await post_form(
        browser, f"/console/members/{chen['id']}/referrer", {"referral_code": "NOSUCH1"}, page
    )
    assert wrong.status_code == 422
    assert 'id="referral_code-error"' in wrong.text and 'value="NOSUCH1"' in wrong.text
    wrong_zh = await browser.post(
        f"/console/members/{chen['id']}/referrer",
        data={"referral_code": "NOSUCH1", "_csrf_token": csrf_from(shown.text)},
        headers={"Accept-Language": "zh-CN"},
    )
    assert "no member has this referral code" not in wrong_zh.text
    referrals = await client.get(f"/api/v1/members/{chen['id']}/referrals", headers=admin)
    assert referrals.json()["referred_by"] is None

    code = (await client.get(f"/api/v1/members/{lin['id']}/referrals", headers=admin)).json()[
        "code"
    ]
    saved = await post_form(
        browser, f"/console/members/{chen['id']}/referrer", {"referral_code": code}, page
    )
    assert saved.status_code == 303
    after = await browser.get(saved.headers["location"])
    assert "The referrer is recorded." in after.text and 'data-testid="referred-by"' in after.text
    referrals = await client.get(f"/api/v1/members/{chen['id']}/referrals", headers=admin)
    assert referrals.json()["referred_by"]["code"] == code


async def test_another_departments_rep_gets_not_found(make_client, team):
    chen = team["members"]["Chen Jie"]
    browser = await sign_in(make_client(), "wei")
    assert (await browser.get(f"/console/members/{chen['id']}/history")).status_code == 404
