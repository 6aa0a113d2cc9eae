"""One settings object, read from the environment (every variable starts with LOYALTY_)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MODES = ("demo", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    mode: str = "demo"
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: str = ""
    data_dir: Path = field(default_factory=lambda: Path(".loyalty"))
    host: str = "127.0.0.1"
    port: int = 8000
    currency: str = "CNY"
    timezone: str = "Asia/Shanghai"
    phone_region: str = "CN"
    log_level: str = "INFO"
    web_workers: int = 1
    web_header_timeout: int = 10  # seconds to send a request's line and headers
    web_body_timeout: int = 20  # seconds to send a body, plus one per 500 bytes received
    web_keep_alive: int = 5  # seconds an idle kept-alive connection stays open
    web_send_timeout: int = 60  # seconds a client may leave its response unread
    web_max_connections: int = 1000  # past this, requests get 503 at once
    session_max_age: int = 8 * 3600
    secure_cookies: bool = False
    login_attempts_per_account: int = 5
    login_attempts_per_address: int = 20
    login_window_seconds: int = 900
    token_ttl_hours: int = 12
    public_url: str = ""  # where members reach the portal; links in messages start with it
    smtp_host: str = ""  # empty: mail is written to the data folder's outbox (demo)
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "Loyalty <no-reply@loyalty.example>"
    sms_webhook_url: str = ""  # empty: text messages are written to the data folder's outbox
    service_phone: str = "400-820-8820"
    service_email: str = "service@loyalty.example"
    point_value: Decimal = Decimal("0.01")  # what a point costs the company, for liability

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read and validate every LOYALTY_ variable; generate the demo secret key if needed."""
        var = _Variables(dict(os.environ if env is None else env))
        mode = _mode(var)
        log_level = _log_level(var)
        timezone = _timezone(var)
        currency = _currency(var)
        data_dir = Path(var.get("DATA_DIR", ".loyalty") or ".loyalty").resolve()
        secret_key = _secret_key(var.get("SECRET_KEY"), mode, data_dir)
        return cls(
            mode=mode,
            database_url=var.get("DATABASE_URL"),
            redis_url=var.get("REDIS_URL"),
            secret_key=secret_key,
            data_dir=data_dir,
            host=var.get("HOST", "127.0.0.1") or "127.0.0.1",
            port=var.get_int("PORT", 8000, minimum=1),
            currency=currency,
            timezone=timezone,
            phone_region=(var.get("PHONE_REGION", "CN") or "CN").upper(),
            log_level=log_level,
            web_workers=var.get_int("WEB_WORKERS", 1, minimum=1),
            web_header_timeout=var.get_int("WEB_HEADER_TIMEOUT", 10, minimum=1),
            web_body_timeout=var.get_int("WEB_BODY_TIMEOUT", 20, minimum=1),
            web_keep_alive=var.get_int("WEB_KEEP_ALIVE", 5, minimum=1),
            web_send_timeout=var.get_int("WEB_SEND_TIMEOUT", 60, minimum=1),
            web_max_connections=var.get_int("WEB_MAX_CONNECTIONS", 1000, minimum=10),
            session_max_age=var.get_int("SESSION_MAX_AGE", 8 * 3600, minimum=60),
            secure_cookies=(var.get("SECURE_COOKIES", "") or "").lower() in {"1", "true", "yes"},
            login_attempts_per_account=var.get_int("LOGIN_ATTEMPTS_PER_ACCOUNT", 5, minimum=1),
            login_attempts_per_address=var.get_int("LOGIN_ATTEMPTS_PER_ADDRESS", 20, minimum=1),
            login_window_seconds=var.get_int("LOGIN_WINDOW_SECONDS", 900, minimum=1),
            token_ttl_hours=var.get_int("TOKEN_TTL_HOURS", 12, minimum=1),
            smtp_host=var.get("SMTP_HOST", "") or "",
            smtp_port=var.get_int("SMTP_PORT", 25, minimum=1),
            smtp_user=var.get("SMTP_USER", "") or "",
            smtp_password=var.get("SMTP_PASSWORD", "") or "",
            smtp_starttls=(var.get("SMTP_STARTTLS", "") or "").lower() in {"1", "true", "yes"},
            mail_from=var.get("MAIL_FROM", Settings.mail_from) or Settings.mail_from,
            sms_webhook_url=var.get("SMS_WEBHOOK_URL", "") or "",
            service_phone=var.get("SERVICE_PHONE", Settings.service_phone)
            or Settings.service_phone,
            service_email=var.get("SERVICE_EMAIL", Settings.service_email)
            or Settings.service_email,
            point_value=_decimal(var.get("POINT_VALUE"), "POINT_VALUE", Decimal("0.01")),
            public_url=_public_url(
                var.get("PUBLIC_URL"), var.get("HOST", "127.0.0.1"), var.get("PORT", "8000")
            ),
        )


class _Variables:
    """The LOYALTY_ variables of one environment; a blank value counts as unset."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(f"LOYALTY_{name}", "").strip()
        return value or default

    def get_int(self, name: str, default: int, minimum: int = 0) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"LOYALTY_{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"LOYALTY_{name} must be at least {minimum}, got {value}")
        return value


def _mode(var: _Variables) -> str:
    mode = (var.get("MODE", "demo") or "demo").lower()
    if mode not in MODES:
        raise SettingsError(f"LOYALTY_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _log_level(var: _Variables) -> str:
    log_level = (var.get("LOG_LEVEL", "INFO") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise SettingsError(f"LOYALTY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
    return log_level


def _timezone(var: _Variables) -> str:
    timezone = var.get("TIMEZONE", "Asia/Shanghai") or "Asia/Shanghai"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"LOYALTY_TIMEZONE {timezone!r} is not a known time zone") from None
    return timezone


def _currency(var: _Variables) -> str:
    currency = (var.get("CURRENCY", "CNY") or "CNY").upper()
    if len(currency) != 3 or not currency.isalpha():
        raise SettingsError(f"LOYALTY_CURRENCY must be an ISO 4217 code, got {currency!r}")
    return currency


def _secret_key(configured: str | None, mode: str, data_dir: Path) -> str:
    secret_key = configured
    if secret_key is None:
        if mode == "production":
            raise SettingsError("LOYALTY_SECRET_KEY is required when LOYALTY_MODE=production")
        secret_key = _demo_secret_key(data_dir)
    if len(secret_key) < 32:
        raise SettingsError("LOYALTY_SECRET_KEY must be at least 32 characters")
    return secret_key


def _decimal(raw: str | None, name: str, default: Decimal) -> Decimal:
    if raw is None:
        return default
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise SettingsError(f"LOYALTY_{name} must be a number, got {raw!r}") from None
    if not value.is_finite() or value < 0:
        raise SettingsError(f"LOYALTY_{name} must be zero or more, got {raw!r}")
    return value


def _public_url(configured: str | None, host: str | None, port: str | None) -> str:
    url = configured or f"http://{host}:{port}"
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"LOYALTY_PUBLIC_URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def _demo_secret_key(data_dir: Path) -> str:
    """Generate the demo secret once and keep it in the data folder, so sessions survive restarts."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key


_settings: Settings | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def reset_settings() -> None:
    """Forget the cached settings (after the environment changed, e.g. embedded URLs were set)."""
    global _settings
    _settings = None
