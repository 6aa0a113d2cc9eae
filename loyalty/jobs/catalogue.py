"""Every background job of the platform: what it does and when it runs. The worker builds its
cron schedules from here (`loyalty.worker`), and the console's jobs page and `loyalty jobs`
describe the jobs from here, so the schedule shown is the schedule run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loyalty.infrastructure.i18n import N_


@dataclass(frozen=True)
class Job:
    name: str  # the arq function name
    summary: str  # N_: what it does
    when: str  # N_: when it runs, in words (business time zone)
    schedule: dict[str, Any] = field(default_factory=dict)  # arq cron(); empty: queued only
    run_at_startup: bool = False
    argument: str | None = None  # N_: the id a queued job needs; such a job cannot run by hand

    @property
    def can_run_now(self) -> bool:
        return self.argument is None


JOBS: tuple[Job, ...] = (
    Job(
        "relay_outbox",
        N_("Queue the events recorded in the outbox"),
        N_("every 5 seconds, and at worker start"),
        {"second": set(range(0, 60, 5))},
        run_at_startup=True,
    ),
    Job(
        "send_webhooks",
        N_("Post webhook deliveries that are due"),
        N_("every 10 seconds, and at worker start"),
        {"second": set(range(2, 60, 10))},
        run_at_startup=True,
    ),
    Job(
        "release_pending_points",
        N_("Make pending points past their return window available"),
        N_("hourly at :05, and at worker start"),
        {"minute": {5}},
        run_at_startup=True,
    ),
    Job(
        "escalate_handovers",
        N_("Remind managers of handovers not reassigned in time"),
        N_("hourly at :10"),
        {"minute": {10}},
    ),
    Job(
        "retry_offer_deliveries",
        N_("Retry offer deliveries that failed and are due again"),
        N_("every minute"),
        {"second": {30}},
    ),
    Job(
        "refresh_segment_facts",
        N_("Rebuild the segment facts the segment builder counts from"),
        N_("every 5 minutes, and at worker start"),
        {"minute": set(range(1, 60, 5))},
        run_at_startup=True,
    ),
    Job(
        "reclaim_members",
        N_("Return neglected members to the pool"),
        N_("daily at 00:30"),
        {"hour": {0}, "minute": {30}},
    ),
    Job(
        "evaluate_tiers",
        N_("Evaluate tiers: grace periods, downgrades, ended overrides"),
        N_("daily at 01:00"),
        {"hour": {1}, "minute": {0}},
    ),
    Job(
        "expire_points",
        N_("Expire points past their expiry, oldest first"),
        N_("daily at 02:30"),
        {"hour": {2}, "minute": {30}},
    ),
    Job(
        "prune_expired_tokens",
        N_("Delete long-expired staff API tokens"),
        N_("daily at 03:15"),
        {"hour": {3}, "minute": {15}},
    ),
    Job(
        "plan_follow_ups",
        N_("Plan reps' follow-ups and contact reminders"),
        N_("daily at 06:00"),
        {"hour": {6}, "minute": {0}},
    ),
    Job(
        "automatic_offers",
        N_("Send birthday, welcome and win-back offers"),
        N_("daily at 09:00"),
        {"hour": {9}, "minute": {0}},
    ),
    Job(
        "expiry_warnings",
        N_("Tell members whose points expire within 30 days"),
        N_("daily at 10:00"),
        {"hour": {10}, "minute": {0}},
    ),
    Job(
        "deliver_events",
        N_("Run the subscribers of up to 100 events"),
        N_("when the outbox relay queues events"),
        argument=N_("event ids"),
    ),
    Job(
        "deliver_event",
        N_("Run the subscribers of one event"),
        N_("when the outbox relay queues an event"),
        argument=N_("an event id"),
    ),
    Job(
        "send_offer",
        N_("Deliver an offer to its members"),
        N_("when an offer is sent"),
        argument=N_("an offer id"),
    ),
    Job(
        "run_import",
        N_("Run an uploaded import"),
        N_("when a file is uploaded for import"),
        argument=N_("an import id"),
    ),
)

BY_NAME = {job.name: job for job in JOBS}
