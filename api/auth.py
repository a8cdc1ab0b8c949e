"""API keys: writes need one (and are off without one); reads need one only if configured.

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>` and compared in
constant time, so response timing does not reveal how much of a guess was right.

`KeyGuardMiddleware` checks it from the headers alone, before the body is read or parsed
(a client without the key gets 401, not a verdict on its JSON, and the server reads
nothing it did not need to). The route's dependency runs the same check again, so a route
is never open when the app is mounted without the middleware, and /docs shows the schemes.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError, error_response

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="newsdesk"'}

KeyCheck = Callable[..., Awaitable[None]]


def key_matches(given: str, accepted: Sequence[SecretStr]) -> bool:
    """Whether `given` equals one of the keys; every key is compared, in constant time each."""
    matched = False
    for key in accepted:
        matched |= hmac.compare_digest(given.encode("utf-8"), key.get_secret_value().encode("utf-8"))
    return matched


@dataclass(frozen=True)
class KeyRule:
    """Which keys open a group of routes; `disabled` is the 403 message when there is none."""

    accepted: Sequence[SecretStr]
    action: str
    disabled: str | None = None

    def refusal(self, given: str | None) -> ApiError | None:
        """Why a request with key `given` (None: none sent) is refused, or None if it may go on."""
        if not self.accepted:
            return ApiError(403, "writes_disabled", self.disabled or f"{self.action} is disabled on this server.")
        if not given:
            return ApiError(
                401, "unauthorized",
                f"{self.action} needs an API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
                _CHALLENGE,
            )
        if not key_matches(given, self.accepted):
            return ApiError(401, "unauthorized", f"The API key is not valid for {self.action.lower()}.", _CHALLENGE)
        return None


def given_key(headers: Mapping[str, str]) -> str | None:
    """The key a request sends: a non-empty X-API-Key, else a Bearer token (as FastAPI's schemes read them)."""
    if header := headers.get("x-api-key"):
        return header
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def require_key(accepted: Sequence[SecretStr], action: str, disabled: str | None = None) -> KeyCheck:
    """A FastAPI dependency: 401 without a valid key; 403 with `disabled` when no key is configured."""
    rule = KeyRule(list(accepted), action, disabled)

    async def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_api_key_header)],
    ) -> None:
        # `bearer` and `header` put the two schemes in /docs; the key is read as the middleware reads it.
        if error := rule.refusal(given_key(request.headers)):
            raise error

    check.rule = rule  # type: ignore[attr-defined]  # read by KeyGuardMiddleware
    return check


class KeyGuardMiddleware:
    """Answers 401/403 from the headers for a route guarded by `require_key`, before its body is read."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's list, filled after the middleware is added

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (rule := self._rule(scope)) is not None:
            headers = Headers(scope=scope)
            if error := rule.refusal(given_key(headers)):
                # The body is never read: with one on the way, close the connection rather than
                # have the server read and discard whatever a client without the key sends.
                has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
                close = {"Connection": "close"} if has_body else {}
                await error_response(error.status, error.code, error.message, error.headers | close)(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _rule(self, scope: Scope) -> KeyRule | None:
        """The key rule of the route that will serve this request (the first full match, as the router picks)."""
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                for dependency in getattr(route, "dependencies", ()):
                    if isinstance(rule := getattr(dependency.dependency, "rule", None), KeyRule):
                        return rule
                return None
        return None
