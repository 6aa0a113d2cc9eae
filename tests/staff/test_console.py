"""Console sign-in with server-side sessions, CSRF, rate limits and deactivation."""

from __future__ import annotations

from tests.helpers.pages import csrf_from
from tests.helpers.staff import TEST_PASSWORD


async def sign_in(client, username: str, password: str = TEST_PASSWORD):
    page = await client.get("/console/login")
    assert page.status_code == 200
    return await client.post(
        "/console/login",
        data={"username": username, "password": password, "_csrf_token": csrf_from(page.text)},
    )


async def test_sign_in_shows_the_dashboard_and_sets_a_safe_cookie(client, make_staff):
    await make_staff("mia", "manager", "east")
    response = await sign_in(client, "mia")
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith("loyalty_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    dashboard = await client.get("/console")
    assert dashboard.status_code == 200
    assert "Welcome, mia" in dashboard.text and "manager" in dashboard.text


async def test_username_is_case_insensitive(client, make_staff):
    await make_staff("mia", "rep")
    response = await sign_in(client, "MIA")
    assert response.status_code == 303


async def test_wrong_password_and_unknown_user_get_the_same_answer(client, make_staff):
    await make_staff("mia", "rep")
    wrong = await sign_in(client, "mia", "not-the-password-at-all")
    unknown = await sign_in(client, "nobody", "not-the-password-at-all")
    assert wrong.status_code == unknown.status_code == 401
    assert "unknown username or wrong password" in wrong.text
    assert wrong.text.replace("mia", "X") == unknown.text.replace("nobody", "X")
    assert (await client.get("/console", follow_redirects=False)).status_code == 302


async def test_sign_out_ends_the_session_on_the_server(client, make_client, make_staff):
    await make_staff("mia", "rep")
    await sign_in(client, "mia")
    session_id = client.cookies["loyalty_session"]
    dashboard = await client.get("/console")
    response = await client.post("/console/logout", data={"_csrf_token": csrf_from(dashboard.text)})
    assert response.status_code == 303
    # Replaying the old cookie from elsewhere no longer works: the server forgot it.
    thief = make_client()
    thief.cookies.set("loyalty_session", session_id)
    assert (await thief.get("/console")).status_code == 302


async def test_sign_in_issues_a_new_session_id(client, make_staff, app):
    await make_staff("mia", "rep")
    planted = "a" * 64
    client.cookies.set("loyalty_session", planted)
    response = await sign_in(client, "mia")
    issued = next(
        h.split(";")[0].split("=", 1)[1]
        for h in response.headers.get_list("set-cookie")
        if h.startswith("loyalty_session=")
    )
    assert issued != planted and len(issued) == 64
    assert await app.stores.get("sessions").get(planted) is None


async def test_post_without_csrf_token_is_refused(client, make_staff):
    await make_staff("mia", "rep")
    await client.get("/console/login")
    response = await client.post(
        "/console/login", data={"username": "mia", "password": TEST_PASSWORD}
    )
    assert response.status_code == 403
    assert "loyalty_session" not in client.cookies


async def test_post_with_a_forged_csrf_token_is_refused(client, make_staff):
    await make_staff("mia", "rep")
    await client.get("/console/login")
    response = await client.post(
        "/console/login",
        data={"username": "mia", "password": TEST_PASSWORD, "_csrf_token": "forged" * 10},
    )
    assert response.status_code == 403


async def test_repeated_failures_lock_the_account_even_for_the_right_password(
    client, make_client, make_staff, settings
):
    await make_staff("mia", "rep")
    for _ in range(settings.login_attempts_per_account):
        assert (await sign_in(client, "mia", "wrong-password-123")).status_code == 401
    # From another address too: the limit is per account.
    other = make_client("10.7.7.7")
    locked = await sign_in(other, "mia")
    assert locked.status_code == 429
    assert "too many sign-in attempts" in locked.text


async def test_one_address_trying_many_accounts_is_limited(client, make_client, settings):
    for i in range(settings.login_attempts_per_address):
        assert (await sign_in(client, f"user{i}", "wrong-password-123")).status_code == 401
    assert (await sign_in(client, "another", "wrong-password-123")).status_code == 429
    # Another address is not affected.
    assert (await sign_in(make_client("10.8.8.8"), "another", "wrong-pass-99")).status_code == 401


async def test_deactivation_ends_open_sessions(client, make_client, make_staff, app):
    await make_staff("boss", "admin")
    rep = await make_staff("leaver", "rep", "east")
    rep_browser = make_client("10.5.5.5")
    await sign_in(rep_browser, "leaver")
    assert (await rep_browser.get("/console")).status_code == 200
    session_id = rep_browser.cookies["loyalty_session"]

    await sign_in(client, "boss")
    staff_page = await client.get("/console/staff")
    assert "leaver" in staff_page.text
    response = await client.post(
        f"/console/staff/{rep.id}/deactivate", data={"_csrf_token": csrf_from(staff_page.text)}
    )
    assert response.status_code == 303
    assert (await rep_browser.get("/console", follow_redirects=False)).status_code == 302
    assert await app.stores.get("sessions").get(session_id) is None
    # And the leaver cannot sign in again.
    assert (await sign_in(make_client("10.5.5.6"), "leaver")).status_code == 401


async def test_reps_cannot_open_the_staff_page_or_deactivate(client, make_staff):
    boss = await make_staff("boss", "admin")
    await make_staff("ravi", "rep", "east")
    await sign_in(client, "ravi")
    page = await client.get("/console/staff")
    assert page.status_code == 403
    dashboard = await client.get("/console")
    response = await client.post(
        f"/console/staff/{boss.id}/deactivate", data={"_csrf_token": csrf_from(dashboard.text)}
    )
    assert response.status_code == 403
