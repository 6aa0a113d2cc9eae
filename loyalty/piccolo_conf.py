"""Piccolo's configuration: the engine and every domain app."""

from piccolo.conf.apps import AppRegistry

from loyalty.infrastructure.db import engine as DB

APP_REGISTRY = AppRegistry(
    apps=[
        "loyalty.staff.piccolo_app",
        "loyalty.members.piccolo_app",
        "loyalty.points.piccolo_app",
        "loyalty.tiers.piccolo_app",
        "loyalty.events.piccolo_app",
        "loyalty.referrals.piccolo_app",
        "loyalty.rewards.piccolo_app",
        "loyalty.reps.piccolo_app",
        "loyalty.webhooks.piccolo_app",
        "loyalty.marketing.piccolo_app",
        "loyalty.imports.piccolo_app",
        "loyalty.jobs.piccolo_app",
        "loyalty.audit.piccolo_app",
    ]
)

__all__ = ["APP_REGISTRY", "DB"]
