"""Languages of the portal: English and Simplified Chinese from gettext catalogs (Babel),
chosen per request, with numbers, dates and money formatted for the language."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path

from babel import Locale, dates, numbers
from babel.support import NullTranslations, Translations

from loyalty.settings import get_settings

LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "messages"
LANGUAGES = {"en": "English", "zh": "中文"}
# Babel's locale for each language code the portal offers.
BABEL_LOCALES = {"en": "en_US", "zh": "zh_Hans_CN"}
CATALOG_LOCALES = {"zh": "zh_Hans"}
DEFAULT = "en"

current: ContextVar[str] = ContextVar("portal_language", default=DEFAULT)


@cache
def translations(language: str) -> NullTranslations:
    if language not in CATALOG_LOCALES:
        return NullTranslations()
    return Translations.load(LOCALE_DIR, [CATALOG_LOCALES[language]], DOMAIN)


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language asked for on the switch, else the one remembered, else the browser's."""
    for asked in (query, cookie):
        if asked in LANGUAGES:
            return asked  # type: ignore[return-value]
    ranked = []
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        if tag:
            ranked.append((weight, tag.lower()))
    for _, tag in sorted(ranked, key=lambda pair: -pair[0]):
        language = tag.split("-")[0]
        if language in LANGUAGES:
            return language
    return DEFAULT


def member_language(chosen: str | None, accept_language: str | None) -> str:
    """The language a member's messages are shown in: the member's chosen language, else the
    request's Accept-Language, else the platform default. The one rule, used everywhere."""
    if chosen in LANGUAGES:
        return chosen  # type: ignore[return-value]
    return choose(None, None, accept_language)


@contextmanager
def speaking(language: str) -> Iterator[None]:
    """Translate and format in `language` for a while (a message written for one member)."""
    token = current.set(language if language in LANGUAGES else DEFAULT)
    try:
        yield
    finally:
        current.reset(token)


def gettext(message: str) -> str:
    return translations(current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current.get()).ngettext(singular, plural, n)


def _locale() -> Locale:
    return Locale.parse(BABEL_LOCALES[current.get()])


def number(value: int | Decimal | float) -> str:
    return numbers.format_decimal(value, locale=_locale())


def money(value: Decimal | int | float) -> str:
    return numbers.format_currency(value, get_settings().currency, locale=_locale())


def day(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(get_settings().tz).date()
    return dates.format_date(value, format="medium", locale=_locale())


def moment(value: datetime | None) -> str:
    if value is None:
        return ""
    return dates.format_datetime(value, format="medium", tzinfo=get_settings().tz, locale=_locale())


def N_(message: str) -> str:  # marks a string for the catalog; translated where shown
    return message


# Codes the portal shows (channels, ledger entry kinds, statuses, tiers): their words.
LABELS = {
    "email": N_("Email"),
    "sms": N_("Text message"),
    "wechat": N_("WeChat"),
    "phone": N_("Phone call"),
    "post": N_("Post"),
    "portal": N_("Portal"),
    "purchase_earn": N_("Purchase"),
    "referral_earn": N_("Referral"),
    "bonus": N_("Bonus"),
    "redemption": N_("Redemption"),
    "reversal": N_("Reversal"),
    "expiry": N_("Expired"),
    "adjustment": N_("Adjustment"),
    "transfer": N_("Transfer"),
    "requested": N_("Requested"),
    "fulfilled": N_("Fulfilled"),
    "cancelled": N_("Cancelled"),
    "pending": N_("Waiting for a first purchase"),
    "held": N_("Being checked"),
    "rewarded": N_("Rewarded"),
    "rejected": N_("Not accepted"),
    "reversed": N_("Taken back"),
    "normal": N_("Normal"),
    "silver": N_("Silver"),
    "gold": N_("Gold"),
    "platinum": N_("Platinum"),
    "diamond": N_("Diamond"),
    "goods": N_("Goods"),
    "voucher": N_("Voucher"),
    "event_seat": N_("Event seat"),
    "bonus_service": N_("Service"),
    "not_enough_points": N_("You need more available points."),
    "points_in_debt": N_("Points owed from a return must be repaid first."),
    "tier_too_low": N_("For members of a higher tier."),
    "limit_reached": N_("You have reached the limit for this reward."),
    "out_of_stock": N_("Out of stock."),
    "not_started": N_("Not available yet."),
    "inactive": N_("Not on offer."),
    "ended": N_("No longer available."),
}


def label(code: str) -> str:
    """The word for a code in the member's language (the code itself if unknown)."""
    return gettext(LABELS[code]) if code in LABELS else code


# Codes the staff console shows (roles, contact kinds and channels, follow-up and reclaim
# rules, assignment kinds, swap statuses): their words.
CONSOLE_LABELS = {
    "admin": N_("Administrator"),
    "general_manager": N_("General manager"),
    "manager": N_("Manager"),
    "rep": N_("Sales rep"),
    "service": N_("Customer service"),
    "marketing": N_("Marketing"),
    "search_q": N_("Name"),
    "search_phone": N_("Phone"),
    "search_email": N_("Email"),
    "search_number": N_("Member number"),
    "reclaim_inactive": N_("No purchase or referral since the assignment began"),
    "reclaim_no_deal": N_("No purchase for too long"),
    "reclaim_protection": N_("Not served in the protection period: may be taken back now"),
    "rule_after_purchase": N_("Weekly after a purchase"),
    "rule_long_standing": N_("Monthly, long-standing member"),
    "rule_no_intent": N_("Every two months"),
    "rule_silent": N_("Not contacted for 90 days"),
    "rule_tier_cadence": N_("The tier's contact cadence"),
    "rule_valuable_declining": N_("Valuable member declining: call"),
    "group_valuable": N_("Valuable"),
    "group_rising": N_("Rising"),
    "group_declining": N_("Declining"),
    "group_at_risk": N_("At risk"),
    "kind_visit": N_("Visit"),
    "kind_call": N_("Call"),
    "kind_message": N_("Message"),
    "kind_complaint": N_("Complaint"),
    "kind_request": N_("Request"),
    "kind_note": N_("Note"),
    "channel_visit": N_("In person"),
    "channel_phone": N_("Phone"),
    "channel_email": N_("Email"),
    "channel_sms": N_("Text message"),
    "channel_wechat": N_("WeChat"),
    "channel_portal": N_("Portal"),
    "channel_post": N_("Post"),
    "assignment_registration": N_("registration"),
    "assignment_referral": N_("referral"),
    "assignment_pool": N_("from the pool"),
    "assignment_transfer": N_("transfer"),
    "assignment_handover": N_("handover"),
    "assignment_swap": N_("swap"),
    "assignment_reclaim": N_("reclaimed"),
    "handover_departure": N_("left the company"),
    "handover_transfer": N_("moved department"),
    "swap_pending": N_("waiting"),
    "swap_approved": N_("approved"),
    "swap_refused": N_("refused"),
    "basis_net_spend": N_("net spend"),
    "basis_points_earned": N_("points earned"),
    "stage_prospect_with_intent": N_("Prospect with intent"),
    "stage_prospect_without_intent": N_("Prospect without intent"),
    "stage_new_customer": N_("New customer"),
    "stage_regular": N_("Regular customer"),
    "stage_lapsing": N_("Lapsing"),
    "stage_lost": N_("Lost"),
    "intent_intent": N_("intent"),
    "intent_no_intent": N_("no intent"),
    "intent_refused": N_("refused"),
    "field_name": N_("name"),
    "field_phone": N_("phone"),
    "field_email": N_("email"),
    "field_birthday": N_("birthday"),
    "field_address": N_("address"),
    "field_household": N_("household"),
    "field_occupation": N_("occupation or company"),
    "field_preferences": N_("preferences"),
    "field_preferred_channel": N_("preferred channel"),
    "field_source": N_("source"),
    "field_relationship_strength": N_("relationship strength"),
    "field_hobbies": N_("hobbies"),
    "level_junior": N_("junior"),
    "level_regular": N_("regular"),
    "level_senior": N_("senior"),
    "team_lead": N_("Lead"),
    "team_service": N_("Service"),
    "team_settlement": N_("Settlement"),
    "team_operations": N_("Operations"),
    "team_sponsor": N_("Executive sponsor"),
    "rotation_proposed": N_("proposed"),
    "rotation_applied": N_("applied"),
    "request_open": N_("Open"),
    "request_answered": N_("Answered"),
    "request_resolved": N_("Resolved"),
}


def staff_label(code: str) -> str:
    """The word for a console code in the reader's language (the code itself if unknown)."""
    if code in CONSOLE_LABELS:
        return gettext(CONSOLE_LABELS[code])
    return label(code)


def install(environment) -> None:
    """Gettext and the formatting filters for templates, following the request's language."""
    environment.add_extension("jinja2.ext.i18n")
    environment.install_gettext_callables(gettext, ngettext, newstyle=True)
    environment.filters.update(number=number, money=money, day=day, moment=moment)
    environment.globals.update(
        languages=LANGUAGES, current_language=current.get, label=label, staff_label=staff_label
    )
