"""The Litestar application: JSON API under /api/v1, staff console pages, health, OpenAPI."""

from __future__ import annotations

from pathlib import Path

from arq.connections import ArqRedis
from litestar import Litestar, Response
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import MediaType
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from litestar.stores.redis import RedisStore
from litestar.template.config import TemplateConfig
from litestar.types import ControllerRouterHandler, Scope

from loyalty.audit.controllers import AuditController, audit_middleware
from loyalty.auth import provide_principal
from loyalty.console.controllers import ConsoleController
from loyalty.errors import exception_handlers
from loyalty.exports.controllers import ExportController
from loyalty.http.health import health
from loyalty.http.middleware import (
    StrictJsonRequest,
    authentication_middleware,
    nul_middleware,
    page_middleware,
)
from loyalty.http.openapi import (
    StrictStructSchemaPlugin,
    cache_yaml,
    document_public_endpoints,
    finish_document,
)
from loyalty.imports.controllers import ImportConsole, ImportController
from loyalty.infrastructure import db, i18n
from loyalty.infrastructure.logs import configure_logging, request_log_middleware
from loyalty.infrastructure.runtime import collect_garbage_less_often
from loyalty.infrastructure.sessions import SESSION_COOKIE, RotatingSessionConfig
from loyalty.marketing.controllers import (
    MarketingSettingsController,
    MovementReportController,
    OfferController,
    SegmentController,
    UnsubscribeController,
)
from loyalty.members.controllers import ClosureRequestController, MemberController
from loyalty.points.controllers import (
    EarningRulesController,
    MemberPointsController,
    PurchaseController,
)
from loyalty.portal.api import MeController, MemberSignInController
from loyalty.portal.controllers import PortalController
from loyalty.referrals.controllers import (
    MemberReferralController,
    ReferralController,
    ReferralSettingsController,
)
from loyalty.reps.controllers import (
    AccountManagementController,
    ContactController,
    OwnershipController,
    RotationController,
    ServiceTeamController,
)
from loyalty.rewards.controllers import (
    MemberRewardController,
    RedemptionController,
    RewardController,
)
from loyalty.settings import Settings, get_settings
from loyalty.staff.controllers import ApiKeyController, AuthController, StaffController
from loyalty.tiers.controllers import (
    MemberTierController,
    TierController,
    TierSettingsController,
)
from loyalty.webhooks.controllers import WebhookController

PACKAGE_DIR = Path(__file__).parent
MAX_BODY_BYTES = 1024 * 1024
NOT_SESSION_PATHS = ["^/api/", "^/health", "^/schema", "^/static/"]


def redis_client(url: str) -> ArqRedis:
    """One client for sessions, rate limits and job enqueueing; fails fast when Redis is down."""
    return ArqRedis.from_url(
        url, socket_connect_timeout=2, socket_timeout=5, health_check_interval=30
    )


async def startup(app: Litestar) -> None:
    collect_garbage_less_often()
    await db.start_pool()


async def shutdown(app: Litestar) -> None:
    await db.close_pool()
    await app.state.redis.aclose()


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError(
            "create_app needs LOYALTY_DATABASE_URL and LOYALTY_REDIS_URL; "
            "the loyalty command sets them when it starts embedded services"
        )
    configure_logging(settings.log_level)
    db.configure_engine(settings.database_url)
    redis = redis_client(settings.redis_url)
    session_config = _session_config(settings)
    struct_schemas = StrictStructSchemaPlugin()
    app = Litestar(
        route_handlers=_route_handlers(),
        on_startup=[startup],
        on_shutdown=[shutdown],
        dependencies={
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        middleware=[
            request_log_middleware,
            nul_middleware,
            page_middleware,
            session_config.middleware,
            authentication_middleware,
            audit_middleware,
        ],
        stores={"sessions": RedisStore(redis, namespace="sessions")},
        csrf_config=_csrf_config(settings),
        template_config=_template_config(),
        openapi_config=_openapi_config(),
        exception_handlers=exception_handlers,
        request_class=StrictJsonRequest,
        plugins=[struct_schemas],
        # Bodies over 1 MiB are refused with 413 before they are read in full (handlers
        # that take bigger uploads raise their own limit).
        request_max_body_size=MAX_BODY_BYTES,
        state=State({"settings": settings, "redis": redis}),
        debug=False,
        logging_config=None,  # ours: JSON lines, set up in configure_logging
    )
    document_public_endpoints(app)
    finish_document(app, struct_schemas)
    _options_list_every_method(app)
    return app


def _route_handlers() -> list[ControllerRouterHandler]:
    """Every controller of the API, the console and the portal, health and static files."""
    return [
        health,
        AuthController,
        StaffController,
        ApiKeyController,
        MemberController,
        PurchaseController,
        MemberPointsController,
        EarningRulesController,
        TierController,
        TierSettingsController,
        MemberTierController,
        ReferralController,
        ReferralSettingsController,
        MemberReferralController,
        RewardController,
        MemberRewardController,
        RedemptionController,
        OwnershipController,
        AccountManagementController,
        RotationController,
        ServiceTeamController,
        ExportController,
        AuditController,
        ClosureRequestController,
        WebhookController,
        ContactController,
        MemberSignInController,
        MeController,
        SegmentController,
        OfferController,
        MarketingSettingsController,
        MovementReportController,
        UnsubscribeController,
        ConsoleController,
        ImportConsole,
        ImportController,
        PortalController,
        create_static_files_router(path="/static", directories=[PACKAGE_DIR / "static"]),
    ]


def _session_config(settings: Settings) -> RotatingSessionConfig:
    return RotatingSessionConfig(
        key=SESSION_COOKIE,
        max_age=settings.session_max_age,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
        exclude=NOT_SESSION_PATHS,
        renew_on_access=True,
    )


def _csrf_config(settings: Settings) -> CSRFConfig:
    return CSRFConfig(
        secret=settings.secret_key,
        cookie_name="loyalty_csrf",
        cookie_secure=settings.secure_cookies,
        cookie_httponly=True,
        exclude=["^/api/", "^/health"],
    )


def _template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(
        directory=[
            PACKAGE_DIR / "console" / "templates",
            PACKAGE_DIR / "portal" / "templates",
            PACKAGE_DIR / "imports" / "templates",
        ],
        engine=JinjaTemplateEngine,
        engine_callback=lambda engine: i18n.install(engine.engine),
    )


def _openapi_config() -> OpenAPIConfig:
    config = OpenAPIConfig(
        title="Loyalty platform API",
        version="1",
        description="Members, points, tiers and referrals. Authenticate with "
        "`Authorization: Bearer <staff token or integration API key>`.",
        path="/schema",
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(
                    type="http", scheme="bearer", description="Staff token or API key"
                )
            }
        ),
        security=[{"bearer": []}],
    )
    config.render_plugins = cache_yaml(list(config.render_plugins))
    return config


def _options_list_every_method(app: Litestar) -> None:
    """Litestar makes a path's OPTIONS handler with the first handler registered on it and
    keeps it when handlers of other methods join the path, so `Allow` named only some of
    them. Rebind each OPTIONS handler to its path's complete route."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        allow = ", ".join(sorted(route.methods))
        for handler in route.route_handlers:
            if handler.http_methods == {"OPTIONS"} and handler.handler_name == "options_handler":

                def options_handler(scope: Scope, allow: str = allow) -> Response:
                    return Response(
                        content=None,
                        status_code=204,
                        headers={"Allow": allow},
                        media_type=MediaType.TEXT,
                    )

                handler._fn = options_handler
