"""The rep's front line over HTTP: registering a customer (errors beside their field, CSRF,
a double submit registering once, the live duplicate check telling who registered an
existing customer and nothing more to those who may not see it, asking the manager), and
the rep's own swap requests."""

from __future__ import annotations

import asyncio
import re

from tests.helpers.console import post_form, sign_in
from tests.helpers.pages import csrf_from

PHONE = "13800138000"
E164 = "+8613800138000"


def form_key(html: str) -> str:
    found = re.search(r'name="form_key" value="([^"]+)"', html)
    assert found, "the registration form has its one-time key"
    return found.group(1)


async def register(browser, **fields):
    page = await browser.get("/console/register")
    data = {"kind": "person", "form_key": form_key(page.text), **fields}
    data["_csrf_token"] = csrf_from(page.text)
    return await browser.post("/console/register", data=data)


async def holders(client, admin, phone=E164) -> list[dict]:
    found = await client.get("/api/v1/members", params={"phone": phone}, headers=admin)
    return found.json()["items"]


async def test_a_rep_registers_a_customer_into_their_own_book(make_client, team, client, admin):
    ravi = await sign_in(make_client(), "ravi")
    form = await ravi.get("/console/register")
    assert form.status_code == 200 and 'name="phone"' in form.text
    assert 'href="/console/register" aria-current="page"' in form.text  # in the navigation

    answer = await register(
        ravi,
        name="Wang Fang",
        phone="138 0013 8000",
        email="Wang.Fang@Example.com",
        city="Hangzhou",
    )
    assert answer.status_code == 303, answer.text
    member_page = await ravi.get(answer.headers["location"])
    assert "The customer is registered." in member_page.text and "Wang Fang" in member_page.text

    [found] = await holders(client, admin)
    member = (await client.get(f"/api/v1/members/{found['id']}", headers=admin)).json()
    assert member["email"] == "wang.fang@example.com"
    assert member["assigned_rep_id"] == str(team["staff"]["ravi"].id)
    assert member["registration"]["by"] == "staff:ravi"
    assert member["address"]["city"] == "Hangzhou"
    periods = (await client.get(f"/api/v1/members/{found['id']}/assignments", headers=admin)).json()
    assert [(p["rep"], p["kind"]) for p in periods] == [("ravi", "registration")]


async def test_an_organisation_is_registered_with_its_sections(make_client, team, client, admin):
    ravi = await sign_in(make_client(), "ravi")
    answer = await register(
        ravi,
        kind="organisation",
        name="Hangzhou Tea Traders",
        email="buy@tea-traders.example.com",
        company_profile="Wholesale tea, 40 staff",
        settlement_habits="Pays monthly by transfer",
        key_name_0="Li Ming",
        key_role_0="Buyer",
    )
    assert answer.status_code == 303, answer.text
    page = (await ravi.get(answer.headers["location"])).text
    assert "Pays monthly by transfer" in page and "Li Ming (Buyer)" in page
    found = await client.get(
        "/api/v1/members", params={"email": "buy@tea-traders.example.com"}, headers=admin
    )
    member_id = found.json()["items"][0]["id"]
    member = (await client.get(f"/api/v1/members/{member_id}", headers=admin)).json()
    assert member["kind"] == "organisation"
    assert member["organisation"]["key_staff"] == [{"name": "Li Ming", "role": "Buyer"}]


async def test_bad_input_is_shown_beside_its_field_and_nothing_is_saved(
    make_client, team, client, admin
):
    ravi = await sign_in(make_client(), "ravi")
    before = (await client.get("/api/v1/members", headers=admin)).json()["items"]

    bad_email = await register(ravi, name="Wang Fang", phone=PHONE, email="not-an-email")
    assert bad_email.status_code == 422
    assert re.search(
        r'<p class="field-error" id="email-error">is not a valid email', bad_email.text
    )
    assert 'value="Wang Fang"' in bad_email.text  # what was typed stays

    neither = await register(ravi, name="Wang Fang")
    assert neither.status_code == 422
    assert '<p class="field-error" id="phone-error">give a phone or an email</p>' in neither.text

    no_name = await register(ravi, name=" ", phone=PHONE)
    assert no_name.status_code == 422 and 'id="name-error"' in no_name.text

    future = await register(ravi, name="Wang Fang", phone=PHONE, birthday="2999-01-01")
    assert future.status_code == 422 and 'id="birthday-error">cannot be in the future' in (
        future.text
    )

    ravi.cookies.set("loyalty_lang", "zh", path="/console")
    chinese = await register(ravi, name="Wang Fang")
    assert chinese.status_code == 422
    assert '<html lang="zh-Hans">' in chinese.text and "请填写电话或电子邮箱" in chinese.text

    after = (await client.get("/api/v1/members", headers=admin)).json()["items"]
    assert len(after) == len(before)


async def test_a_post_without_the_csrf_token_is_refused(make_client, team, client, admin):
    ravi = await sign_in(make_client(), "ravi")
    page = await ravi.get("/console/register")
    refused = await ravi.post(
        "/console/register",
        data={"name": "Wang Fang", "phone": PHONE, "form_key": form_key(page.text)},
    )
    assert refused.status_code == 403
    assert await holders(client, admin) == []


async def test_a_double_submit_registers_once(make_client, team, client, admin):
    ravi = await sign_in(make_client(), "ravi")
    page = await ravi.get("/console/register")
    data = {
        "kind": "person",
        "name": "Wang Fang",
        "phone": PHONE,
        "form_key": form_key(page.text),
        "_csrf_token": csrf_from(page.text),
    }
    first, second = await asyncio.gather(
        ravi.post("/console/register", data=data), ravi.post("/console/register", data=data)
    )
    assert first.status_code == second.status_code == 303, (first.text, second.text)
    assert first.headers["location"] == second.headers["location"]
    again = await ravi.post("/console/register", data=data)  # a resubmit later
    assert again.headers["location"] == first.headers["location"]
    assert len(await holders(client, admin)) == 1


async def test_an_existing_customer_is_told_with_who_registered_it(
    make_client, team, client, admin
):
    ravi = await sign_in(make_client(), "ravi")
    assert (await register(ravi, name="Wang Fang", phone=PHONE)).status_code == 303
    [wang] = await holders(client, admin)

    # The registering rep, typing it again: the member, with a link to log a contact.
    own = await ravi.get("/console/register/check", params={"phone": "+86 138 0013 8000"})
    assert "Registered by you on" in own.text
    assert f'href="/console/members/{wang["id"]}#log-contact"' in own.text

    # Another rep, in this department or another, learns who registered it and when: not
    # the name, number or id, and nothing of the archive.
    for username in ("rosa", "wei"):
        rep = await sign_in(make_client(), username)
        checked = await rep.get("/console/register/check", params={"phone": PHONE})
        assert checked.status_code == 200
        assert "This phone is registered already." in checked.text
        assert "Registered by ravi on " in checked.text
        for secret in ("Wang Fang", wang["number"], wang["id"], E164):
            assert secret not in checked.text, (username, secret)
        assert "Ask the manager for this customer" in checked.text

        submitted = await register(rep, name="Wang F.", phone=PHONE, email="wf@example.com")
        assert submitted.status_code == 409
        assert "No second record is made." in submitted.text
        for secret in ("Wang Fang", wang["number"], wang["id"]):
            assert secret not in submitted.text, (username, secret)
        assert len(await holders(client, admin)) == 1
        assert (
            await client.get("/api/v1/members", params={"email": "wf@example.com"}, headers=admin)
        ).json()["items"] == []

    # Whoever may see the member (an admin sees every member) gets the member itself.
    ada = await sign_in(make_client(), "ada")
    seen = await ada.get("/console/register/check", params={"phone": PHONE})
    assert "Registered by ravi on " in seen.text and "Open Wang Fang and log a contact" in seen.text

    # Nothing typed that anyone holds: an empty answer.
    nobody = await ravi.get("/console/register/check", params={"phone": "13900000000"})
    assert nobody.status_code == 200 and nobody.text.strip() == ""
    half_typed = await ravi.get("/console/register/check", params={"phone": "1380"})
    assert half_typed.status_code == 200 and half_typed.text.strip() == ""


async def test_asking_the_manager_for_a_customer(make_client, team, client, admin):
    ravi = await sign_in(make_client(), "ravi")  # east
    assert (await register(ravi, name="Wang Fang", phone=PHONE)).status_code == 303
    [wang] = await holders(client, admin)

    wei = await sign_in(make_client(), "wei")  # west: asks for a customer of the east
    page = await wei.get("/console/register")
    asked = await wei.post(
        "/console/register/ask",
        data={"phone": PHONE, "note": "Met her at the fair", "_csrf_token": csrf_from(page.text)},
    )
    assert asked.status_code == 303 and asked.headers["location"].endswith("saved=asked")
    told = await wei.get(asked.headers["location"])
    assert "Your managers are told that you ask for this customer." in told.text

    # The managers who may move the member (the east's) are told, with a link to it.
    mia = await sign_in(make_client(), "mia")
    notices = (await mia.get("/console/notices")).text
    assert "wei asks to serve member" in notices and "Met her at the fair" in notices
    assert f'href="/console/members/{wang["id"]}"' in notices
    wu = await sign_in(make_client(), "wu")
    assert "asks to serve member" not in (await wu.get("/console/notices")).text

    again = await post_form(wei, "/console/register/ask", {"phone": PHONE, "note": "again"})
    assert again.headers["location"].endswith("saved=asked_before")
    notices = (await mia.get("/console/notices")).text
    assert notices.count("Met her at the fair") == 1 and "again" not in notices

    # The rep who serves it has nothing to ask.
    mine = await post_form(ravi, "/console/register/ask", {"phone": PHONE, "note": ""})
    assert mine.status_code == 409 and "you serve this customer already" in mine.text


async def test_my_swaps_lists_my_requests_with_their_outcome(make_client, team):
    chen, lin = team["members"]["Chen Jie"], team["members"]["Lin Fang"]
    ravi = await sign_in(make_client(), "ravi")
    page = await ravi.get("/console/my-swaps")
    assert page.status_code == 200 and "No swap request is waiting." in page.text
    assert "Chen Jie" in page.text  # one of ravi's members to choose

    missing = await post_form(
        ravi, "/console/my-swaps", {"member_id": chen["id"], "other_number": "", "reason": "x"}
    )
    assert missing.status_code == 422
    assert 'id="other_number-error">give the other member&#39;s number' in missing.text
    unknown = await post_form(
        ravi,
        "/console/my-swaps",
        {"member_id": chen["id"], "other_number": "1234567890", "reason": "x"},
    )
    assert unknown.status_code == 422 and 'id="other_number-error">no member has this' in (
        unknown.text
    )
    not_mine = await post_form(
        ravi, "/console/my-swaps", {"member_id": lin["id"], "other_number": chen["number"]}
    )
    assert not_mine.status_code == 404  # Lin Fang is rosa's: not reachable, as in the API

    data = {"member_id": chen["id"], "other_number": lin["number"], "reason": "Near my store"}
    first = await post_form(ravi, "/console/my-swaps", data)
    second = await post_form(ravi, "/console/my-swaps", data)
    assert first.status_code == second.status_code == 303
    listed = (await ravi.get("/console/my-swaps")).text
    assert listed.count('data-status="pending"') == 1  # asked twice, asked once
    # The other rep's member is named by its number only.
    assert "Lin Fang" not in listed and "Near my store" in listed

    mia = await sign_in(make_client(), "mia")
    swaps_page = (await mia.get("/console/swaps")).text
    swap_id = re.search(r'data-swap="([^"]+)"', swaps_page).group(1)
    refused = await post_form(
        mia, f"/console/swaps/{swap_id}/refuse", {"note": "Not this quarter"}, "/console/swaps"
    )
    assert refused.status_code == 303

    decided = (await ravi.get("/console/my-swaps")).text
    assert 'data-status="refused"' in decided and "Not this quarter" in decided
    assert "Decided by mia" in decided
    # rosa sees it too: it involved her member.
    rosa = await sign_in(make_client(), "rosa")
    assert 'data-status="refused"' in (await rosa.get("/console/my-swaps")).text


async def test_the_front_line_pages_need_their_permissions(make_client, team, make_staff):
    await make_staff("mo", "marketing", "marketing")
    marketer = await sign_in(make_client(), "mo")
    for url in ("/console/register", "/console/my-swaps", "/console/register/check"):
        assert (await marketer.get(url)).status_code == 403, url
    signed_out = make_client()
    response = await signed_out.get("/console/register", follow_redirects=False)
    assert response.headers["location"] == "/console/login"
    ravi = await sign_in(make_client(), "ravi")
    home = (await ravi.get("/console")).text
    assert 'href="/console/register"' in home and 'href="/console/my-swaps"' in home
    for url, words in (("/console/register", "登记新客户"), ("/console/my-swaps", "我的调换")):
        chinese = await ravi.get(url, headers={"Accept-Language": "zh-CN"})
        assert chinese.status_code == 200 and words in chinese.text, url
        assert "Register a customer" not in chinese.text, url


async def test_asking_twice_for_the_same_swap_through_the_api_asks_once(client, team, bearer):
    ravi = await bearer("rep", "ravi2", "east")
    chen = (await client.post("/api/v1/members", json={"name": "Qin"}, headers=ravi)).json()
    body = {
        "member_a": chen["id"],
        "member_b": team["members"]["Lin Fang"]["id"],
        "reason": "Near my store",
    }
    first = await client.post("/api/v1/swaps", json=body, headers=ravi)
    second = await client.post("/api/v1/swaps", json=body, headers=ravi)
    assert first.status_code == second.status_code == 201, first.text
    assert first.json()["id"] == second.json()["id"]
    listed = (await client.get("/api/v1/swaps", headers=ravi)).json()
    assert [swap["id"] for swap in listed] == [first.json()["id"]]
