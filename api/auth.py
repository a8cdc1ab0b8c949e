"""API keys: writes need one (and are off without one); reads need one only if configured.

A key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>` and compared in
constant time, so response timing does not reveal how much of a guess was right.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api.errors import ApiError

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: <key>")

KeyCheck = Callable[..., Awaitable[None]]


def key_matches(given: str, accepted: Sequence[SecretStr]) -> bool:
    """Whether `given` equals one of the keys; every key is compared, in constant time each."""
    matched = False
    for key in accepted:
        matched |= hmac.compare_digest(given.encode("utf-8"), key.get_secret_value().encode("utf-8"))
    return matched


def require_key(accepted: Sequence[SecretStr], action: str, disabled: str | None = None) -> KeyCheck:
    """A FastAPI dependency: 401 without a valid key; 403 with `disabled` when no key is configured."""

    async def check(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_api_key_header)],
    ) -> None:
        if not accepted:
            raise ApiError(403, "writes_disabled", disabled or f"{action} is disabled on this server.")
        given = header if header is not None else bearer.credentials if bearer is not None else None
        challenge = {"WWW-Authenticate": 'Bearer realm="newsdesk"'}
        if not given:
            raise ApiError(
                401, "unauthorized",
                f"{action} needs an API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
                challenge,
            )
        if not key_matches(given, accepted):
            raise ApiError(401, "unauthorized", f"The API key is not valid for {action.lower()}.", challenge)

    return check
