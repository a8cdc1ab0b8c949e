"""CORS for browsers on other origins, with refused preflights in the app's JSON error shape."""

from __future__ import annotations

from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.responses import Response

from api.errors import error_response


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORSMiddleware; a preflight it refuses gets the same 400, as {"error": ...} with the reason."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        reasons = self._refusals(request_headers) or [bytes(response.body).decode("utf-8", "replace")]
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
        message = "Cross-origin request refused: " + "; ".join(reasons) + "."
        return error_response(400, "cors_not_allowed", message, headers)

    def _refusals(self, request_headers: Headers) -> list[str]:
        """Why Starlette refused this preflight, in words (its checks, in its order)."""
        reasons = []
        origin = request_headers["origin"]
        if not self.is_allowed_origin(origin=origin):
            reasons.append(f"origin {origin[:200]!r} is not one of the server's NEWSDESK_CORS_ORIGINS")
        method = request_headers["access-control-request-method"]
        if method not in self.allow_methods:
            reasons.append(f"method {method[:20]!r} is not allowed; use {', '.join(self.allow_methods)}")
        asked = request_headers.get("access-control-request-headers")
        if not self.allow_all_headers and asked is not None:
            refused = [h.strip() for h in asked.lower().split(",") if h.strip() not in self.allow_headers]
            if refused:
                reasons.append(f"header {refused[0][:60]!r} is not allowed; send only {', '.join(self.allow_headers)}")
        if request_headers.get("access-control-request-private-network") is not None and not self.allow_private_network:
            reasons.append("private network access is not allowed")
        return reasons
