"""The crash scenario shared by tests/reliability/test_crash.py (bounded, in CI) and
bench/crash.py (as long as you like).

Real `loyalty serve` and `loyalty worker` processes on their own embedded PostgreSQL run
under a load of purchases and redemptions from concurrent clients while, one after the
other, the web server, the worker and PostgreSQL are killed with SIGKILL and started again.
Then every request the clients did not see answered is sent again with the same key until
it is answered, interrupted requests and a sample of the others are sent once more (each
must be answered 200 with the original), and the database is checked:

- every purchase a client saw acknowledged (2xx) is stored exactly once, as acknowledged,
  with exactly one earn entry; every acknowledged redemption likewise; nothing else exists;
- every balance equals the sum of its entries, and the buckets equal the lots (ledger
  invariants 2, 3 and 5), so no release of pending points ran twice in effect;
- the jobs ran once in effect: a pending-points release enqueued just before the worker
  was killed completed, every lot due before the last release is released, and every
  tier.changed event written under the load was delivered and reached the member's inbox
  exactly once; so was an event whose delivery job was queued into each PostgreSQL crash
  (it runs while the database is down, and must be retried, not failed for good).

arq keeps a job that a killed worker was running "in progress" for job_timeout + 10 s
(610 s) before any worker may run it again. With a single worker that is all it is: a wait.
The scenario takes that wait out (it expires the markers the dead worker left, as time
would) so that a run takes seconds; nothing else is touched.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from loyalty.infrastructure.embedded import EmbeddedPostgres
from tests.reliability.processes import (
    HEALTH_CHECK_KEY,
    PROJECT,
    WebServer,
    Worker,
    child_env,
    crash_postgres,
)

LOYALTY = str(Path(sys.executable).parent / "loyalty")
DATABASE = "loyalty_crash"
REDIS_DB = 9  # the other suites and benches use 10-15
REWARD_COST = 100
CRASHES = ("web", "worker", "postgres")


def redis_with_db(url: str, number: int) -> str:
    """The same Redis, another logical database (unix:// takes it as ?db=)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":  # urlunsplit would drop the // of an empty host
        query = [q for q in parts.query.split("&") if q and not q.startswith("db=")]
        return f"unix://{parts.path}?{'&'.join([*query, f'db={number}'])}"
    return urlunsplit(parts._replace(path=f"/{number}"))


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [LOYALTY, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=180
    )
    if done.returncode != 0:
        raise RuntimeError(f"loyalty {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


# --- the processes -----------------------------------------------------------------------


@dataclass
class Crash:
    target: str
    at: float  # seconds into the load
    down_for: float  # from the kill until the restarted process was ready
    note: str = ""


class Cluster:
    """Own PostgreSQL (in workdir), a Redis database of the caller's Redis, web and worker."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir = workdir
        self.redis_url = redis_with_db(redis_url, REDIS_DB)
        self.postgres = EmbeddedPostgres(workdir / "postgres")
        self.database_url = ""
        self.admin_password = ""
        self.env: dict[str, str] = {}
        self.web: WebServer | None = None
        self.worker: Worker | None = None

    def start(self) -> None:
        self.postgres.ensure_running()
        self.postgres.drop_database(DATABASE)
        self.database_url = self.postgres.ensure_database(DATABASE)
        self._redis().flushdb()
        self.env = child_env(
            self.database_url,
            self.redis_url,
            LOYALTY_DATA_DIR=str(self.workdir / "data"),
            LOYALTY_SECRET_KEY=secrets.token_urlsafe(48),
            LOYALTY_MODE="demo",
        )
        _cli(self.env, "migrate")
        created = _cli(self.env, "create-staff", "--username", "crashadmin", "--role", "admin")
        self.admin_password = re.search(r"password \(shown once\): (\S+)", created).group(1)
        self.web = WebServer(self.env, self.workdir / "serve.log")
        self.worker = Worker(self.env, self.workdir / "worker.log")
        self.web.start()
        self.start_worker()
        self.web.wait_ready()

    def _redis(self):
        import redis

        return redis.Redis.from_url(self.redis_url)

    def start_worker(self) -> None:
        client = self._redis()
        try:
            client.delete(HEALTH_CHECK_KEY)
        finally:
            client.close()
        self.worker.start()
        self.worker.wait_ready(self.redis_url)

    def restart_web(self) -> None:
        self.web.kill()
        self.web.start()
        self.web.wait_ready()

    def restart_worker(self) -> int:
        """kill -9 the worker, let the wait for its in-progress jobs pass, start it again;
        returns how many in-progress markers it left."""
        self.worker.kill()
        client = self._redis()
        try:
            markers = list(client.scan_iter(match="arq:in-progress:*"))
            if markers:
                client.delete(*markers)
        finally:
            client.close()
        self.start_worker()
        return len(markers)

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None:
                process.stop()
        self.postgres.stop()
        try:
            client = self._redis()
            client.flushdb()
            client.close()
        except Exception:
            pass

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n{p.tail()}" for p in (self.web, self.worker) if p is not None
        )


# --- seeding -----------------------------------------------------------------------------


@dataclass
class Seed:
    headers: dict[str, str]
    members: list[str]
    reward_id: str


def seed(base_url: str, password: str, members: int) -> Seed:
    """An admin token, a POS key, members with spendable points, one reward."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        token = http.post(
            "/api/v1/auth/tokens", json={"username": "crashadmin", "password": password}
        )
        if token.status_code != 201:
            raise RuntimeError(f"sign-in failed: {token.status_code} {token.text}")
        admin = {"Authorization": f"Bearer {token.json()['token']}"}
        key = http.post(
            "/api/v1/api-keys",
            json={
                "name": "POS crash",
                "scopes": ["purchases:write", "members:read", "members:write", "redemptions:write"],
            },
            headers=admin,
        )
        key.raise_for_status()
        pos = {"Authorization": f"Bearer {key.json()['key']}"}
        ids = []
        for n in range(members):
            made = http.post("/api/v1/members", json={"name": f"Crash Member {n}"}, headers=pos)
            made.raise_for_status()
            ids.append(made.json()["id"])
        reward = http.post(
            "/api/v1/rewards",
            json={"name": "Tea set", "kind": "goods", "points_cost": REWARD_COST},
            headers=admin,
        )
        reward.raise_for_status()
        return Seed(pos, ids, reward.json()["id"])


# --- the load ----------------------------------------------------------------------------


@dataclass
class Request:
    kind: str  # purchase | redemption
    key: str  # external_id or idempotency_key
    member: str
    path: str
    body: dict[str, Any]
    statuses: list[int | str] = field(default_factory=list)  # one per attempt; str: error
    answer: dict[str, Any] | None = None

    @property
    def final(self) -> int | str | None:
        return self.statuses[-1] if self.statuses else None

    @property
    def acknowledged(self) -> bool:
        return isinstance(self.final, int) and 200 <= self.final < 300

    @property
    def answered(self) -> bool:
        """A definite answer: anything but a transport error or a 5xx."""
        return isinstance(self.final, int) and self.final < 500


def _purchase(run: str, client: int, n: int, member: str, rng: random.Random) -> Request:
    at = datetime.now(UTC)
    shape = rng.random()
    if shape < 0.3:  # past its return window: spendable at once, funds the redemptions
        at -= timedelta(days=20)
    elif shape < 0.5:  # comes due during the run: the release job makes it available
        at -= timedelta(days=14) - timedelta(seconds=rng.uniform(1, 40))
    price = rng.choice(["80.00", "150.00", "320.00"])
    external_id = f"CR-{run}-{client}-{n}"
    body = {
        "external_id": external_id,
        "member_id": member,
        "occurred_at": at.isoformat(),
        "store": "Store 12",
        "currency": "CNY",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": price, "category": "general"}],
        "total": price,
    }
    return Request("purchase", external_id, member, "/api/v1/purchases", body)


def _redemption(run: str, client: int, n: int, member: str, reward_id: str) -> Request:
    key = f"RD-{run}-{client}-{n}"
    body = {"reward_id": reward_id, "idempotency_key": key, "quantity": 1}
    return Request("redemption", key, member, f"/api/v1/members/{member}/redemptions", body)


async def _send(http: httpx.AsyncClient, request: Request, headers: dict[str, str]) -> None:
    try:
        response = await http.post(request.path, json=request.body, headers=headers)
    except httpx.HTTPError as exc:
        request.statuses.append(type(exc).__name__)
        return
    request.statuses.append(response.status_code)
    if 200 <= response.status_code < 300:
        request.answer = response.json()


class Load:
    """Concurrent clients posting purchases (unique external_id) and redemptions (unique
    idempotency key) until stopped; every request and what came back is kept."""

    def __init__(self, base_url: str, seeded: Seed, clients: int, rng_seed: int = 0) -> None:
        self.base_url = base_url
        self.seed = seeded
        self.clients = clients
        self.run = secrets.token_hex(3)
        self.rng = random.Random(rng_seed)
        self.requests: list[Request] = []
        self.stop = asyncio.Event()
        self.resent = 0

    async def _client(self, http: httpx.AsyncClient, number: int) -> None:
        rng = random.Random(self.rng.random())
        n = 0
        while not self.stop.is_set():
            n += 1
            member = rng.choice(self.seed.members)
            if rng.random() < 0.25:
                request = _redemption(self.run, number, n, member, self.seed.reward_id)
            else:
                request = _purchase(self.run, number, n, member, rng)
            self.requests.append(request)
            await _send(http, request, self.seed.headers)
            if not request.answered:
                await asyncio.sleep(0.2)  # the server is down: do not spin

    async def run_until_stopped(self) -> None:
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10, limits=limits) as http:
            await asyncio.gather(*(self._client(http, i) for i in range(self.clients)))

    async def _drain(self, http: httpx.AsyncClient, queue: list[Request]) -> None:
        while queue:
            await _send(http, queue.pop(), self.seed.headers)

    async def retry_unanswered(self, deadline: float) -> None:
        """Send every request without a definite answer again, same key, until answered."""
        limits = httpx.Limits(max_connections=self.clients)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10, limits=limits) as http:
            while True:
                open_requests = [r for r in self.requests if not r.answered]
                if not open_requests or time.monotonic() > deadline:
                    return
                queue = list(reversed(open_requests))
                await asyncio.gather(*(self._drain(http, queue) for _ in range(self.clients)))
                if any(not r.answered for r in open_requests):
                    await asyncio.sleep(0.5)

    async def resend_acknowledged(self, sample: int) -> list[str]:
        """A client that missed an answer sends again: `sample` requests that failed at least
        once and `sample` others, once more each, must be answered 200 with the original."""
        acknowledged = [r for r in self.requests if r.acknowledged]
        interrupted = [r for r in acknowledged if len(r.statuses) > 1]
        others = [r for r in acknowledged if len(r.statuses) == 1]
        chosen = self.rng.sample(interrupted, min(sample, len(interrupted)))
        chosen += self.rng.sample(others, min(sample, len(others)))
        problems: list[str] = []
        queue: asyncio.Queue[Request] = asyncio.Queue()
        for request in chosen:
            queue.put_nowait(request)

        async def resender(http: httpx.AsyncClient) -> None:
            while not queue.empty():
                request = queue.get_nowait()
                again = await http.post(request.path, json=request.body, headers=self.seed.headers)
                body = again.json() if again.status_code == 200 else {}
                replayed = body.get("status") == "replayed" or body.get("replayed") is True
                if again.status_code != 200 or body["id"] != request.answer["id"] or not replayed:
                    problems.append(
                        f"{request.kind} {request.key} sent again: {again.status_code}"
                        f" {again.text[:200]} (first answered {request.answer['id']})"
                    )

        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as http:
            await asyncio.gather(*(resender(http) for _ in range(self.clients)))
        self.resent = len(chosen)
        return problems

    def counts(self) -> Counter:
        counts: Counter = Counter()
        for request in self.requests:
            counts[f"{request.kind}s"] += 1
            if request.acknowledged:
                counts[f"{request.kind}s acknowledged"] += 1
            if request.statuses and request.statuses[0] in (200, 201):
                counts[f"{request.kind}s acknowledged at once"] += 1
            if any(not (isinstance(s, int) and s < 500) for s in request.statuses):
                counts[f"{request.kind}s failed at least once"] += 1
        return counts

    def statuses(self) -> Counter:
        return Counter(str(s) for r in self.requests for s in r.statuses)


# --- the run -----------------------------------------------------------------------------


@dataclass
class Report:
    crashes: list[Crash]
    counts: Counter
    statuses: Counter
    problems: list[str]
    release_jobs: int
    tier_events: int
    seconds: float
    resent: int = 0

    def summary(self) -> str:
        lines = [f"{self.seconds:.1f}s of load"]
        for crash in self.crashes:
            note = f" ({crash.note})" if crash.note else ""
            lines.append(
                f"  kill -9 {crash.target} at {crash.at:.1f}s, back after {crash.down_for:.1f}s"
                f"{note}"
            )
        lines.append("  " + ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items())))
        lines.append(
            "  answers: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.statuses.items()))
        )
        lines.append(
            f"  sent again after an answer: {self.resent}, each answered with the original"
            if not self.problems
            else f"  sent again after an answer: {self.resent}"
        )
        lines.append(
            f"  release jobs (around each worker crash, and a last one): {self.release_jobs};"
            f" tier.changed events delivered: {self.tier_events}, and the deliveries queued"
            " into each PostgreSQL crash"
        )
        lines.append("  problems: " + ("none" if not self.problems else str(len(self.problems))))
        lines.extend(f"    - {p}" for p in self.problems)
        return "\n".join(lines)


async def _enqueue_and_crash_worker(cluster: Cluster, arq, job_ids: list[str]) -> str:
    """Queue a release of pending points, kill -9 the worker as it runs (if we catch it),
    and start the worker again."""
    job_id = f"crash:release:{uuid.uuid4().hex[:8]}"
    await arq.enqueue_job("release_pending_points", _job_id=job_id)
    job_ids.append(job_id)
    caught = False
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if await arq.exists(f"arq:in-progress:{job_id}"):
            caught = True
            break
        await asyncio.sleep(0.005)
    markers = await asyncio.to_thread(cluster.restart_worker)
    running = "while it ran the release job" if caught else "after queueing a release job"
    return f"{running}; {markers} in-progress marker(s) expired"


PROBE_TOPIC = "crash.delivery"  # no subscribers: delivering it only needs the database


async def _crash_postgres_under_a_delivery(cluster: Cluster, arq) -> None:
    """kill -9 PostgreSQL just after the relay queued an event (as it leaves one: published,
    not delivered), so that the delivery job runs while PostgreSQL is down; start it again.
    The event must still be delivered, long before the relay's republish (5 minutes)."""
    event_id = uuid.uuid4()
    conn = await asyncpg.connect(cluster.database_url)
    try:
        await conn.execute(
            "INSERT INTO outbox_events (id, topic, payload, created_at, published_at, attempts)"
            " VALUES ($1, $2, '{}'::jsonb, now(), now(), 1)",
            event_id,
            PROBE_TOPIC,
        )
    finally:
        await conn.close()
    await asyncio.to_thread(crash_postgres, cluster.postgres)
    job_id = f"event:{event_id}:0"
    await arq.enqueue_job("deliver_event", str(event_id), _job_id=job_id)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not await arq.exists(f"arq:retry:{job_id}"):
        await asyncio.sleep(0.05)  # until the worker has tried it (arq counts the tries)
    await asyncio.to_thread(cluster.postgres.ensure_running)


async def run_scenario(
    cluster: Cluster,
    *,
    clients: int,
    members: int,
    interval: float,
    kills: int = len(CRASHES),
    progress: Callable[[str], None] | None = None,
    retry_seconds: float = 90,
    resend: int = 100,
) -> Report:
    """`kills` kill -9s, taking web, worker and PostgreSQL in turn, with `interval` seconds
    of load before each and after the last; then the retries and the checks."""
    from arq.connections import ArqRedis

    begun = time.monotonic()
    say = progress or (lambda _: None)
    seeded = await asyncio.to_thread(seed, cluster.web.url, cluster.admin_password, members)
    load = Load(cluster.web.url, seeded, clients)
    say(f"seeded after {time.monotonic() - begun:.1f}s")
    arq = ArqRedis.from_url(cluster.redis_url)
    crashes: list[Crash] = []
    release_jobs: list[str] = []
    started = time.monotonic()

    async def chaos() -> None:
        try:
            for n in range(kills):
                target = CRASHES[n % len(CRASHES)]
                await asyncio.sleep(interval)
                at = time.monotonic() - started
                say(f"{at:6.1f}s  kill -9 {target}")
                note = ""
                if target == "web":
                    await asyncio.to_thread(cluster.restart_web)
                elif target == "worker":
                    note = await _enqueue_and_crash_worker(cluster, arq, release_jobs)
                else:
                    await _crash_postgres_under_a_delivery(cluster, arq)
                    note = "with an event's delivery queued into the outage"
                crash = Crash(target, at, time.monotonic() - started - at, note)
                crashes.append(crash)
                say(
                    f"{time.monotonic() - started:6.1f}s  {target} back after {crash.down_for:.1f}s"
                )
            await asyncio.sleep(interval)
        finally:
            load.stop.set()

    async def ticker() -> None:
        while not load.stop.is_set():
            await asyncio.sleep(1)
            counts = load.counts()
            say(
                f"{time.monotonic() - started:6.1f}s  purchases {counts['purchases acknowledged']}"
                f"/{counts['purchases']} acknowledged, redemptions"
                f" {counts['redemptions acknowledged']}/{counts['redemptions']},"
                f" failed {counts['purchases failed at least once']}"
                f" + {counts['redemptions failed at least once']}"
            )

    try:
        await asyncio.gather(load.run_until_stopped(), chaos(), ticker())
        seconds = time.monotonic() - started
        say(f"load stopped; retrying {sum(not r.answered for r in load.requests)} unanswered")
        await load.retry_unanswered(time.monotonic() + retry_seconds)
        problems = [
            f"{r.kind} {r.key} never answered: {r.statuses}"
            for r in load.requests
            if not r.answered
        ]
        # Purchases have unique external ids and valid bodies: anything but 2xx is wrong.
        problems += [
            f"purchase {r.key} refused: {r.statuses}"
            for r in load.requests
            if r.kind == "purchase" and r.answered and not r.acknowledged
        ]
        problems += await load.resend_acknowledged(sample=resend)
        say(f"retries and resends done after {time.monotonic() - begun:.1f}s")
        say("checking the database")
        due_before = datetime.now(UTC)
        final_job = f"crash:release:final:{uuid.uuid4().hex[:8]}"
        await arq.enqueue_job("release_pending_points", _job_id=final_job)
        release_jobs.append(final_job)
        problems += await _check_jobs(arq, release_jobs)
        tier_events, tier_problems = await _wait_for_events(cluster.database_url)
        problems += tier_problems
        problems += await check_database(cluster.database_url, load.requests, due_before)
        say(f"checks done after {time.monotonic() - begun:.1f}s")
    finally:
        await arq.aclose()
    return Report(
        crashes,
        load.counts(),
        load.statuses(),
        problems,
        len(release_jobs),
        tier_events,
        seconds,
        load.resent,
    )


async def _check_jobs(arq, job_ids: list[str], timeout: float = 60) -> list[str]:
    from arq.jobs import Job

    problems = []
    for job_id in job_ids:
        job = Job(job_id, arq)
        try:
            await job.result(timeout=timeout, poll_delay=0.2)
        except TimeoutError:
            problems.append(f"job {job_id} did not run within {timeout}s ({await job.status()})")
        except Exception as exc:
            problems.append(f"job {job_id} failed: {exc!r}")
    return problems


async def _wait_for_events(database_url: str, timeout: float = 60) -> tuple[int, list[str]]:
    """Every tier.changed event, and every delivery queued into a crash, delivered (the
    relay runs every 5 s; a delivery that met no database is retried 5, 10, ... s later)."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(database_url)
    try:
        while True:
            events = await conn.fetch(
                "SELECT id, topic, delivered_at, published_at, attempts FROM outbox_events"
                " WHERE topic IN ('tier.changed', $1)",
                PROBE_TOPIC,
            )
            waiting = [e for e in events if e["delivered_at"] is None]
            tier_events = sum(e["topic"] == "tier.changed" for e in events)
            if not waiting:
                return tier_events, []
            if time.monotonic() > deadline:
                return tier_events, [
                    f"{e['topic']} event {e['id']} not delivered after {timeout}s"
                    f" (published_at {e['published_at']}, attempts {e['attempts']})"
                    for e in waiting
                ]
            await asyncio.sleep(0.5)
    finally:
        await conn.close()


async def check_database(
    database_url: str, requests: list[Request], due_before: datetime
) -> list[str]:
    """What the clients were told against what the database holds."""
    problems: list[str] = []
    conn = await asyncpg.connect(database_url)
    try:
        purchases = {
            row["external_id"]: row
            for row in await conn.fetch(
                """
                WITH earns AS (
                    SELECT cause_id, count(*) AS n FROM points_ledger
                    WHERE kind = 'purchase_earn' GROUP BY cause_id
                )
                SELECT p.external_id, p.id,
                       count(*) OVER (PARTITION BY p.external_id) AS copies,
                       coalesce(e.n, 0) AS earns
                FROM purchases p LEFT JOIN earns e ON e.cause_id = p.external_id
                """
            )
        }
        sent = {r.key: r for r in requests if r.kind == "purchase"}
        for key, request in sent.items():
            row = purchases.get(key)
            if request.acknowledged and row is None:
                problems.append(f"acknowledged purchase {key} is missing")
            elif row is not None:
                if row["copies"] != 1 or row["earns"] != 1:
                    problems.append(
                        f"purchase {key}: {row['copies']} rows, {row['earns']} earn entries"
                    )
                if request.answer and str(row["id"]) != request.answer["id"]:
                    problems.append(f"purchase {key} is not the one acknowledged")
        for key in purchases.keys() - sent.keys():
            problems.append(f"purchase {key} was never sent")

        redemptions = {
            row["idempotency_key"].split(":", 1)[1]: row
            for row in await conn.fetch(
                """
                WITH spent AS (
                    SELECT cause_id, count(*) AS n, sum(-points) AS points FROM points_ledger
                    WHERE kind = 'redemption' GROUP BY cause_id
                )
                SELECT d.idempotency_key, d.id, d.points, coalesce(s.n, 0) AS entries,
                       coalesce(s.points, 0) AS spent
                FROM redemptions d LEFT JOIN spent s ON s.cause_id = d.id::text
                """
            )
        }
        asked = {r.key: r for r in requests if r.kind == "redemption"}
        for key, request in asked.items():
            row = redemptions.get(key)
            if request.acknowledged:
                if row is None:
                    problems.append(f"acknowledged redemption {key} is missing")
                elif str(row["id"]) != request.answer["id"]:
                    problems.append(f"redemption {key} is not the one acknowledged")
            elif row is not None:
                problems.append(f"redemption {key} refused ({request.final}) but stored")
            if row is not None and (row["entries"] != 1 or row["spent"] != row["points"]):
                problems.append(
                    f"redemption {key}: {row['entries']} entries for {row['spent']} points,"
                    f" costs {row['points']}"
                )
        for key in redemptions.keys() - asked.keys():
            problems.append(f"redemption {key} was never asked for")

        orphans = await conn.fetchval(
            """
            SELECT (SELECT count(*) FROM points_ledger e
                    LEFT JOIN purchases p ON p.external_id = e.cause_id
                    WHERE e.kind = 'purchase_earn' AND p.id IS NULL)
                 + (SELECT count(*) FROM points_ledger e
                    LEFT JOIN redemptions d ON d.id::text = e.cause_id
                    WHERE e.kind = 'redemption' AND d.id IS NULL)
            """
        )
        if orphans:
            problems.append(f"{orphans} ledger entries without their purchase or redemption")

        # Ledger invariants 2, 3 and 5: the balance is the sum of the entries, the buckets
        # add up, and available/pending are what the released/unreleased lots hold.
        for row in await conn.fetch(
            """
            SELECT a.member, a.total, a.available, a.pending, a.debt,
                   coalesce((SELECT sum(points) FROM points_ledger e
                             WHERE e.member = a.member), 0) AS entries,
                   coalesce((SELECT sum(remaining) FROM points_lots l
                             WHERE l.member = a.member AND l.released), 0) AS released,
                   coalesce((SELECT sum(remaining) FROM points_lots l
                             WHERE l.member = a.member AND NOT l.released), 0) AS unreleased
            FROM points_accounts a
            """
        ):
            account = dict(row)
            if (
                row["total"] != row["entries"]
                or row["total"] != row["available"] + row["pending"] - row["debt"]
                or row["available"] != row["released"]
                or row["pending"] != row["unreleased"]
                or min(row["available"], row["pending"], row["debt"]) < 0
            ):
                problems.append(f"account does not add up: {account}")

        overdue = await conn.fetchval(
            "SELECT count(*) FROM points_lots WHERE NOT released AND available_at <= $1",
            due_before,
        )
        if overdue:
            problems.append(f"{overdue} lots due before the last release job are not released")

        problems += await _check_tiers(conn)
    finally:
        await conn.close()
    return problems


async def _check_tiers(conn: asyncpg.Connection) -> list[str]:
    """Each member on the tier their spend qualifies for, each upgrade recorded once, each
    tier.changed event in the member's inbox once."""
    problems = []
    for row in await conn.fetch(
        """
        SELECT m.id, t.tier,
               (SELECT d.code FROM tier_definitions d
                WHERE d.enabled AND d.threshold <= coalesce(
                    (SELECT sum(p.total) FROM purchases p WHERE p.member = m.id), 0)
                ORDER BY d.rank DESC LIMIT 1) AS qualified,
               (SELECT count(*) FROM tier_changes c
                WHERE c.member = m.id AND c.reason = 'upgrade') AS upgrades,
               (SELECT count(DISTINCT c.to_tier) FROM tier_changes c
                WHERE c.member = m.id AND c.reason = 'upgrade') AS distinct_upgrades,
               (SELECT count(*) FROM outbox_events o
                WHERE o.member = m.id AND o.topic = 'tier.changed') AS events,
               (SELECT count(*) FROM member_notifications n
                WHERE n.member = m.id AND n.kind = 'tier.changed') AS notices
        FROM members m JOIN member_tiers t ON t.member = m.id
        """
    ):
        if row["tier"] != row["qualified"]:
            problems.append(
                f"member {row['id']} is {row['tier']}, qualifies for {row['qualified']}"
            )
        if not (row["upgrades"] == row["distinct_upgrades"] == row["events"] == row["notices"]):
            problems.append(
                f"member {row['id']}: {row['upgrades']} upgrades to {row['distinct_upgrades']}"
                f" tiers, {row['events']} tier.changed events, {row['notices']} inbox messages"
            )
    return problems
