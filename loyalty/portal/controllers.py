"""Member portal pages. Every page calls the same domain services as the API, with the
signed-in member as the principal, so a member can only ever reach their own data.

The pages live by subject: `sign_in.py`, `home.py` (points, rewards, referrals, messages)
and `account.py` (profile, preferences, service requests, privacy); what they share is in
`pages.py`."""

from __future__ import annotations

from litestar import Router

from loyalty.portal.account import AccountPages
from loyalty.portal.home import MemberPages
from loyalty.portal.pages import SignInFirst, follow_member_language, to_sign_in
from loyalty.portal.sign_in import SignInPages

PortalController = Router(
    path="/portal",
    route_handlers=[SignInPages, MemberPages, AccountPages],
    include_in_schema=False,
    exception_handlers={SignInFirst: to_sign_in},
    before_request=follow_member_language,
)
