"""Refuse oversized request bodies before reading them in full."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`.

    A declared Content-Length over the limit is refused without reading a byte of
    the body; a body without one (chunked) is read only until it passes the limit.
    Accepted bodies are buffered (they are small by definition) and replayed to the app.
    `larger` gives some (method, path) pairs their own limit (article uploads).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, larger: Mapping[tuple[str, str], int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = (scope.get("method", ""), _app_path(scope))
        limit = self.larger.get(route, self.max_bytes)
        declared = _content_length(scope)
        if declared == -1:
            await error_response(400, "bad_request", "The Content-Length header is not a number.")(scope, receive, send)
            return
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, f"{declared} bytes", limit, route in self.larger)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._refuse(scope, receive, send, f"more than {limit} bytes", limit, route in self.larger)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, got: str, limit: int, upload: bool) -> None:
        # Connection: close, since the unread rest of the body cannot be skipped safely.
        advice = "(NEWSDESK_MAX_WRITE_BYTES). Send fewer articles at a time." if upload \
            else "(NEWSDESK_MAX_BODY_BYTES). Send a shorter query."
        response = error_response(
            413, "payload_too_large", f"The request body is too large: {got}; the limit is {limit} bytes {advice}",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body size, None if not declared, -1 if malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


def _app_path(scope: Scope) -> str:
    """The request path as the app's routes see it: under a Mount (or a root_path), without its prefix."""
    path, root = scope.get("path", ""), scope.get("root_path", "").rstrip("/")
    return path[len(root):] if root and path.startswith(root + "/") else path
