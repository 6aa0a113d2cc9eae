"""The jobs page: every job with its schedule and last run, run now (once per form), who may
open it; and `loyalty jobs list` / `loyalty jobs run`."""

from __future__ import annotations

import re

from tests.helpers.console import post_form, sign_in


async def _run_worker(settings) -> None:
    from loyalty.worker import create_worker

    worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
    try:
        await worker.main()
    finally:
        await worker.close()


def _key(text: str) -> str:
    return re.search(r'name="key" value="([0-9a-f-]{36})"', text).group(1)


async def test_run_now_twice_from_the_page_runs_the_job_once(make_client, make_staff, settings):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    page = await browser.get("/console/jobs")
    assert page.status_code == 200
    assert 'data-job="evaluate_tiers"' in page.text and "daily at 01:00" in page.text
    key = _key(page.text)
    for _ in range(2):  # a double click: the same form twice
        sent = await post_form(browser, "/console/jobs/evaluate_tiers/run", {"key": key})
        assert sent.status_code == 303 and sent.headers["location"].endswith("saved=queued")
    await _run_worker(settings)
    # And the same form once more after the run: still not again.
    await post_form(browser, "/console/jobs/evaluate_tiers/run", {"key": key})
    await _run_worker(settings)
    detail = await browser.get("/console/jobs/evaluate_tiers")
    assert detail.text.count("data-run=") == 1
    assert 'data-outcome="ok"' in detail.text and "members: " in detail.text
    listed = await browser.get("/console/jobs", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="zh-Hans">' in listed.text and "每天 01:00" in listed.text


async def test_a_failed_job_shows_its_error(make_client, make_staff):
    from loyalty.jobs.service import tracked

    async def evaluate_tiers(ctx):
        raise RuntimeError("the ladder is broken")

    try:
        await tracked(evaluate_tiers)({"job_id": "cron:evaluate_tiers:1"})
    except RuntimeError:
        pass
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    page = await browser.get("/console/jobs")
    row = page.text.split('data-job="evaluate_tiers"')[1].split("</tr>")[0]
    assert 'data-outcome="failed"' in row and "the ladder is broken" in row


async def test_run_now_refuses_bad_input_and_queued_only_jobs(make_client, make_staff, redis):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    bad = await post_form(browser, "/console/jobs/evaluate_tiers/run", {"key": "nope"})
    assert bad.status_code == 422 and "reload the page" in bad.text
    queued_only = await post_form(
        browser, "/console/jobs/run_import/run", {"key": "0b7e3a8e-3f4e-4c39-9d55-3b1c1a7a0c11"}
    )
    assert queued_only.status_code == 422 and "cannot run by hand" in queued_only.text
    unknown = await post_form(
        browser, "/console/jobs/nope/run", {"key": "0b7e3a8e-3f4e-4c39-9d55-3b1c1a7a0c11"}
    )
    assert unknown.status_code == 404
    assert (await browser.get("/console/jobs/nope")).status_code == 404
    assert await redis.keys("arq:job:*") == []
    no_csrf = await browser.post("/console/jobs/evaluate_tiers/run", data={"key": "x"})
    assert no_csrf.status_code == 403


async def test_only_admins_see_the_jobs(make_client, make_staff):
    await make_staff("mia", "manager", "east")
    browser = await sign_in(make_client(), "mia")
    assert (await browser.get("/console/jobs")).status_code == 403
    assert "/console/jobs" not in (await browser.get("/console")).text
