"""Typed configuration for the HTTP service, read from NEWSDESK_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Everything `create_app` and `newsdesk serve` need; pass your own in tests.

    Each field can be set with an environment variable named NEWSDESK_<FIELD>,
    e.g. NEWSDESK_INDEX_DIR, NEWSDESK_PORT, NEWSDESK_CORS_ORIGINS.
    """

    model_config = SettingsConfigDict(env_prefix="NEWSDESK_", extra="ignore", frozen=True)

    index_dir: Path = Field(default=Path(".newsdesk/index"), description="index root (the directory holding CURRENT)")
    host: str = Field(default="127.0.0.1", min_length=1, description="interface to bind (0.0.0.0: the network)")
    port: int = Field(default=8000, ge=1, le=65535)
    # Empty means no CORS headers at all: only pages served by this app (same origin) may call it.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed to call the API from a browser, comma-separated"
    )
    max_query_chars: int = Field(default=1000, ge=1, le=100_000, description="longest query or question, in characters")
    max_k: int = Field(default=100, ge=1, le=1000, description="most passages one request may ask for")
    max_body_bytes: int = Field(default=16_384, ge=256, le=10_000_000, description="largest request body accepted")
    article_context_chars: int = Field(default=200, ge=0, le=10_000, description="default context around a cited span")
    # One thread per query embedding: requests already run in parallel in the thread pool, and
    # torch's default (all cores) spins its threads against each other and against every other
    # process on a small shared machine; measured on 2 cores: ~30 ms per query with 1 thread,
    # ~950 ms median with 2 while other jobs ran (see README, "Latency").
    embed_threads: int = Field(default=1, ge=1, le=256, description="torch CPU threads per query embedding")
    log_level: LogLevel = "info"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """Accept "https://a.example, https://b.example" as well as a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"CORS origin {origin!r} must look like https://example.org (or be *)")
            if origin.endswith("/"):
                raise ValueError(f"CORS origin {origin!r} must not end with '/': browsers send origins without it")
        return origins
