"""The tier pages: every field of a tier, adding one, the qualification settings, the
simulation (nothing saved), a member's override; errors beside their field, nothing saved."""

from __future__ import annotations

from tests.helpers.console import post_form, sign_in


def _gold_form(**changes) -> dict:
    form = {
        "name": "Gold",
        "rank": "2",
        "threshold": "20000",
        "earn_multiplier": "1.5",
        "contact_cadence_days": "14",
        "response_time_hours": "4",
        "executive_sponsor_role": "Regional director",
        "birthday_gift": "A tea set",
        "benefits": "Free delivery\nPriority booking",
        "named_service_team": "on",
        "event_invitations": "on",
        "enabled": "on",
    }
    return {**form, **changes}


async def test_every_field_of_a_tier_is_saved(client, admin, make_client, make_staff):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    saved = await post_form(browser, "/console/tiers/gold", _gold_form(), "/console/tiers")
    assert saved.status_code == 303
    gold = next(
        t for t in (await client.get("/api/v1/tiers", headers=admin)).json() if t["code"] == "gold"
    )
    level = gold["service_level"]
    assert level["executive_sponsor_role"] == "Regional director"
    assert level["birthday_gift"] == "A tea set" and level["benefits"].startswith("Free delivery")
    assert level["named_service_team"] and level["event_invitations"]
    assert level["contact_cadence_days"] == 14 and float(gold["earn_multiplier"]) == 1.5
    page = await browser.get("/console/tiers")
    assert "Regional director" in page.text and "A tea set" in page.text


async def test_bad_tier_input_is_shown_beside_its_field(client, admin, make_client, make_staff):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    before = (await client.get("/api/v1/tiers", headers=admin)).json()
    bad = await post_form(browser, "/console/tiers/gold", _gold_form(response_time_hours="9999"))
    assert bad.status_code == 422
    gold_form = bad.text.split('id="tier-gold"')[1].split("</form>")[0]
    assert 'id="response_time_hours-error"' in gold_form and 'value="9999"' in gold_form
    silver_form = bad.text.split('id="tier-silver"')[1].split("</form>")[0]
    assert "field-error" not in silver_form  # only the tier that failed
    below = await post_form(browser, "/console/tiers/gold", _gold_form(threshold="1"))
    assert below.status_code == 422 and 'id="threshold-error"' in below.text
    new = await post_form(browser, "/console/tiers/new", _gold_form(code="Gold!", name="X"))
    assert new.status_code == 422 and 'id="code-error"' in new.text
    taken = await post_form(browser, "/console/tiers/new", _gold_form(code="gold"))
    assert taken.status_code == 422 and "exists" in taken.text
    assert (await client.get("/api/v1/tiers", headers=admin)).json() == before
    settings = await post_form(
        browser,
        "/console/tier-settings",
        {"basis": "net_spend", "window_months": "0", "grace_days": "30"},
    )
    assert settings.status_code == 422 and 'id="window_months-error"' in settings.text
    unknown = await post_form(browser, "/console/tiers/nope", _gold_form())
    assert unknown.status_code == 404
    no_csrf = await browser.post("/console/tiers/gold", data=_gold_form(name="Forged"))
    assert no_csrf.status_code == 403
    assert (await client.get("/api/v1/tiers", headers=admin)).json() == before


async def test_add_a_tier_and_change_the_settings(client, admin, make_client, make_staff):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    added = await post_form(
        browser,
        "/console/tiers/new",
        _gold_form(code="black", name="Black", rank="9", threshold="500000", enabled=""),
    )
    assert added.status_code == 303
    codes = [t["code"] for t in (await client.get("/api/v1/tiers", headers=admin)).json()]
    assert "black" in codes
    saved = await post_form(
        browser,
        "/console/tier-settings",
        {"basis": "points_earned", "window_months": "24", "grace_days": "60"},
    )
    assert saved.status_code == 303
    settings = (await client.get("/api/v1/tier-settings", headers=admin)).json()
    assert (settings["basis"], settings["window_months"], settings["grace_days"]) == (
        "points_earned",
        24,
        60,
    )


async def test_the_simulation_saves_nothing(client, admin, make_client, make_staff):
    await client.post("/api/v1/members", json={"name": "Sim One"}, headers=admin)
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    page = await browser.get("/console/tiers/simulate")
    assert page.status_code == 200 and 'name="threshold-silver"' in page.text
    form = {
        "rank-normal": "0",
        "threshold-normal": "0",
        "enabled-normal": "on",
        "rank-silver": "1",
        "threshold-silver": "1000",
        "enabled-silver": "on",
        "rank-gold": "2",
        "threshold-gold": "20000",
        "enabled-gold": "on",
        "rank-platinum": "3",
        "threshold-platinum": "50000",
        "rank-diamond": "4",
        "threshold-diamond": "100000",
    }
    result = await post_form(browser, "/console/tiers/simulate", form, "/console/tiers/simulate")
    assert result.status_code == 200 and 'data-members="1"' in result.text
    bad = await post_form(browser, "/console/tiers/simulate", {**form, "threshold-silver": "x"})
    assert bad.status_code == 422 and 'id="threshold-silver-error"' in bad.text
    before = (await client.get("/api/v1/tiers", headers=admin)).json()
    assert [float(t["threshold"]) for t in before if t["code"] == "silver"] == [5000]


async def test_a_manager_overrides_a_members_tier(client, admin, make_client, team):
    member_id = team["members"]["Chen Jie"]["id"]
    browser = await sign_in(make_client(), "mia")
    page = await browser.get(f"/console/members/{member_id}")
    assert f'href="/console/members/{member_id}/tier"' in page.text
    missing = await post_form(
        browser,
        f"/console/members/{member_id}/tier/override",
        {"tier": "gold", "until": "", "reason": "VIP"},
    )
    assert missing.status_code == 422 and 'id="until-error"' in missing.text
    assert (await client.get(f"/api/v1/members/{member_id}/tier", headers=admin)).json()[
        "override"
    ] is None
    done = await post_form(
        browser,
        f"/console/members/{member_id}/tier/override",
        {"tier": "gold", "until": "2027-06-01T00:00", "reason": "VIP customer"},
    )
    assert done.status_code == 303, done.text[-3000:]
    status = (await client.get(f"/api/v1/members/{member_id}/tier", headers=admin)).json()
    assert status["tier"] == "gold" and status["override"]["reason"] == "VIP customer"
    ended = await post_form(browser, f"/console/members/{member_id}/tier/override/end", {})
    assert ended.status_code == 303
    status = (await client.get(f"/api/v1/members/{member_id}/tier", headers=admin)).json()
    assert status["override"] is None
    # Another department's member is out of reach: 404.
    other = team["members"]["Zhao Lei"]["id"]
    assert (await browser.get(f"/console/members/{other}/tier")).status_code == 404
    rep = await sign_in(make_client("10.0.0.4"), "ravi")
    assert (await rep.get(f"/console/members/{member_id}/tier")).status_code == 403
