"""Every error the API returns, in one JSON shape: {"error": {"code", "message"}}.

This is the one place where indexer exceptions, request validation failures and
HTTP errors become status codes. Messages name the field and the limit, and say
the fix; a 500 says only that something went wrong (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from email.message import Message
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import HAS_TEXT, QUERY_TEXT
from indexer.errors import (
    CorpusError,
    CorruptIndex,
    IncompatibleIndex,
    IndexBusy,
    IndexNotFound,
    InvalidQuery,
    NewsdeskError,
)
from indexer.search import SOURCE_ADVICE

log = logging.getLogger("api")

# Most specific first: the first match wins.
INDEXER_ERRORS: tuple[tuple[type[NewsdeskError], int, str], ...] = (
    (InvalidQuery, 422, "invalid_parameter"),
    (IndexBusy, 503, "index_busy"),
    (IndexNotFound, 503, "index_unavailable"),
    (IncompatibleIndex, 503, "index_unavailable"),
    (CorruptIndex, 503, "index_unavailable"),
    (CorpusError, 400, "bad_request"),
    (NewsdeskError, 400, "bad_request"),
)

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

INTERNAL_MESSAGE = "Something went wrong on the server; it has been logged. Try again, and report it if it persists."


class ApiError(Exception):
    """An error with its HTTP status, a stable machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error response every failure uses."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def translate(exc: NewsdeskError) -> ApiError:
    """The HTTP form of an indexer exception."""
    for kind, status, code in INDEXER_ERRORS:
        if isinstance(exc, kind):
            message = str(exc)
            if isinstance(exc, InvalidQuery) and exc.field not in message:
                message = f"{exc.field}: {message}"
            # A build elsewhere finishes in a while: tell clients when to come back.
            headers = {"Retry-After": "5"} if isinstance(exc, IndexBusy) else None
            return ApiError(status, code, message, headers)
    raise AssertionError("unreachable: NewsdeskError is the last entry")  # pragma: no cover


def describe_validation(
    errors: list[dict[str, Any]], rules: Mapping[str, str], content_type: str | None, example: str,
    query_params: Sequence[str] = (),
) -> ApiError:
    """One clear ApiError for a failed request validation (the first problem found).

    `query_params` are the endpoint's query parameters, listed when an unknown one was sent.
    """
    unknown = [str(e["loc"][1]) for e in errors
               if e.get("type") == "extra_forbidden" and tuple(e.get("loc", ()))[:1] == ("query",)]
    if unknown:
        return ApiError(422, "invalid_parameter", _unknown_parameters(unknown, query_params))
    body_errors = [e for e in errors if e.get("loc", ("",))[0] == "body"]
    # FastAPI (0.132 on) reads a body as JSON only when its Content-Type says so; an absent
    # body (error "missing") is answered below, whatever the header.
    sent_body = any(e.get("type") != "missing" for e in body_errors)
    if body_errors and (content_type is not None or sent_body) and not _is_json(content_type or ""):
        got = f"got {content_type!r}" if content_type is not None else "no Content-Type was given"
        return ApiError(
            415, "unsupported_media_type",
            f"The request body must be JSON sent with Content-Type: application/json ({got}).",
        )
    # An unknown field first: {"query": ...} is better answered "unknown field query" than "q is required".
    error = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
    kind = error.get("type", "")
    loc = tuple(error.get("loc", ()))
    if kind == "json_invalid":
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        return ApiError(400, "malformed_json", f"The request body is not valid JSON ({reason}{where}); send {example}.")
    if loc[:1] == ("body",) and len(loc) == 1:
        if kind == "missing":
            return ApiError(422, "invalid_parameter", f"The request body is required: send {example}.")
        if kind == "value_error":  # a check across fields, e.g. the same article twice
            reason = (error.get("ctx") or {}).get("error") or error.get("msg", "is invalid")
            return ApiError(422, "invalid_parameter", str(reason))
        return ApiError(422, "invalid_parameter", f"The request body must be a JSON object such as {example}.")
    # The rule is looked up by the field's name; the message shows where it is (articles[0].text).
    names = [str(part) for part in loc[1:] if not isinstance(part, int)]
    field = names[-1] if names else ""
    label = _label(loc[1:])
    rule = rules.get(field)
    if kind == "extra_forbidden":
        where = f"in {_label(loc[1:-1])}" if len(loc) > 2 else "in the request body"
        message = f"Unknown field {field!r} {where}; send {example}."
    elif kind == "value_error" or not field:
        reason = (error.get("ctx") or {}).get("error") or error.get("msg", "is invalid")
        # A nested field is named in full (articles[0].date), even when the reason names it too.
        message = str(reason) if not field or (label == field and field in str(reason)) else f"{label}: {reason}"
    elif kind == "missing":
        message = f"{label} is required" + (f": {rule}." if rule else ".")
    elif kind == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") in (HAS_TEXT, QUERY_TEXT):
        message = f"{label} is empty (only whitespace or control characters); " + (
            SOURCE_ADVICE if field == "source" else "type some words."
        )
    else:
        got = _show(error.get("input"))
        message = f"{label} must be {rule}{got}." if rule else f"{label}: {error.get('msg', 'is invalid')}{got}."
    return ApiError(422, "invalid_parameter", message)


def install_error_handlers(
    app: FastAPI, rules: Mapping[str, str], examples: Mapping[str, str],
    query_params: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Route every exception the app can meet into the one error shape.

    `query_params` maps a route's path (its template) to the query parameters it takes.
    """
    query_params = query_params or {}

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_indexer_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NewsdeskError)
        error = translate(exc)
        return error_response(error.status, error.code, error.message, error.headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        example = examples.get(request.url.path, "a JSON object (see /docs)")
        route = getattr(request.scope.get("route"), "path", request.url.path)
        error = describe_validation(list(exc.errors()), rules, request.headers.get("content-type"), example,
                                    query_params.get(route, ()))
        return error_response(error.status, error.code, error.message)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        headers = dict(exc.headers or {})
        if status == 400:
            # Raised by FastAPI when it cannot read the body at all (not UTF-8, nested too deep).
            example = examples.get(request.url.path, "a JSON object (see /docs)")
            reason = "it is not UTF-8, is nested too deeply, or has a number with too many digits"
            return error_response(
                400, "malformed_json", f"The request body cannot be read as JSON ({reason}); send {example}.", headers
            )
        if status == 404:
            message = f"No such endpoint: {request.method} {request.url.path}. The endpoints are listed at /docs."
        elif status == 405:
            # Starlette names the methods of the first route with this path only (GET for
            # /search, which POST serves too): gather them from every route that matches.
            allowed = _allowed_methods(request) or headers.get("allow") or headers.get("Allow", "")
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"} | {"Allow": allowed}
            message = f"{request.method} is not allowed on {request.url.path}; use {allowed or 'see /docs'}."
        else:
            message = str(exc.detail)
        return error_response(status, HTTP_CODES.get(status, f"http_{status}"), message, headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this response, so the server logs the traceback once.
        return error_response(500, "internal_error", INTERNAL_MESSAGE)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(NewsdeskError, on_indexer_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def _allowed_methods(request: Request) -> str:
    """The methods the app serves on this request's path, as an Allow header lists them."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def _unknown_parameters(unknown: Sequence[str], known: Sequence[str]) -> str:
    """Name the unknown query parameters, suggest the likely intended one, list the real ones."""
    names = ", ".join(repr(name[:40]) for name in unknown)
    message = f"Unknown query parameter{'s' if len(unknown) > 1 else ''} {names}"
    close = get_close_matches(unknown[0], known, n=1)
    if close:
        message += f" (did you mean {close[0]}?)"
    return message + (f"; the parameters are {', '.join(known)}." if known else "; see /docs.")


def _label(parts: tuple[Any, ...]) -> str:
    """A field's place in the request: ('articles', 0, 'text') -> articles[0].text."""
    label = ""
    for part in parts:
        label += f"[{part}]" if isinstance(part, int) else f".{part}" if label else str(part)
    return label


def _is_json(content_type: str) -> bool:
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _show(value: Any) -> str:
    """`, got <value>` for short scalar inputs; long or structured inputs are not echoed back."""
    if isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 40):
        return f", got {value!r}"
    if isinstance(value, str):
        return f", got {len(value)} characters"
    return ""
