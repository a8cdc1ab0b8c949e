"""Refuse query strings that are not UTF-8 before the app reads them."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import error_response

MESSAGE = "The query string is not UTF-8: percent-encode each parameter's UTF-8 bytes."


class QueryEncodingMiddleware:
    """400 for a query string that does not decode as UTF-8 (`?q=Daimler%ff`, or raw high bytes).

    Starlette decodes it with replacement characters, so the app would search for
    "Daimler\N{REPLACEMENT CHARACTER}" and answer 200 as if the client had asked for it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_utf8_query(scope.get("query_string", b"")):
            await error_response(400, "bad_request", MESSAGE)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def is_utf8_query(raw: bytes) -> bool:
    """Whether every name and value of a raw query string is UTF-8 once its escapes are undone."""
    for part in raw.replace(b"+", b" ").split(b"&"):
        try:
            unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True
