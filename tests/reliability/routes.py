"""The API's routes as the reliability suites call them (`loyalty.http.routes`), and the
endpoints anyone may call."""

from __future__ import annotations

from loyalty.http.routes import Route, api_routes

__all__ = ["PUBLIC", "Route", "api_routes"]

# Endpoints anyone may call: sign-in and sign-up.
PUBLIC = {
    ("POST", "/api/v1/auth/tokens"),
    ("POST", "/api/v1/me/sign-in"),
    ("POST", "/api/v1/me/sign-in/code"),
    ("POST", "/api/v1/me/sign-in/password"),
    ("POST", "/api/v1/me/sign-up"),
    ("POST", "/api/v1/me/sign-up/confirm"),
}
