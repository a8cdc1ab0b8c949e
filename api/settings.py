"""Typed configuration for the HTTP service, read from NEWSDESK_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from indexer.publish import DEFAULT_INDEX_DIR

MIN_KEY_CHARS = 16
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class Settings(BaseSettings):
    """Everything `create_app` and `newsdesk serve` need; pass your own in tests.

    Each field can be set with an environment variable named NEWSDESK_<FIELD>,
    e.g. NEWSDESK_INDEX_DIR, NEWSDESK_PORT, NEWSDESK_CORS_ORIGINS.
    """

    model_config = SettingsConfigDict(env_prefix="NEWSDESK_", extra="ignore", frozen=True)

    index_dir: Path = Field(default=DEFAULT_INDEX_DIR, description="index root (the directory holding CURRENT)")
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
    embed_threads: int = Field(
        default=1, ge=1, le=256, description="CPU threads per query embedding and per FAISS search"
    )
    # Queries that arrive while the model is busy can be embedded together (api/batching.py).
    # Off by default: with the int8 MiniLM on 2 cores a batch costs about as much per query as
    # single calls, and 8 clients got no more searches/s (eval/README.md, Speed).
    micro_batch: bool = Field(default=False, description="embed concurrent queries in shared batches")
    # Late interaction (indexer/late_interaction.py): the top 40 passages re-scored with the
    # model's token vectors (eval/README.md, "Late interaction"). Unset, it follows the index: on
    # (40 passages) for one that stores token vectors, as `newsdesk index` builds by default, off
    # for one built with --no-late-interaction. Set, it changes only the depth: the weight stays the
    # one that suits the index (`indexer.search.default_config`). On an index without token vectors
    # each search encodes its top passages again (0.16-0.65 s a query at depth 20 on 2 cores); 0: off.
    late_interaction_depth: int | None = Field(
        default=None, ge=0, le=1000,  # SearchConfig.late_depth (not imported: settings stay light)
        description="hybrid passages re-scored by late interaction per search "
        "(unset: the index's default, 40 where it stores token vectors, else 0; 0: off)",
    )
    log_level: LogLevel = "info"
    # Live reload: a cheap read of <index_dir>/CURRENT this often; a new id is loaded off the
    # event loop, checked, and swapped in without a restart.
    reload_interval: float = Field(
        default=2.0, ge=0, le=3600, description="seconds between checks for a newly published index (0: never)"
    )
    # Load shedding: searches and questions beyond this many at once get 503 + Retry-After
    # instead of waiting in an unbounded queue (each one holds a worker thread and memory).
    max_concurrent_searches: int = Field(
        default=32, ge=1, le=10_000, description="searches and questions in progress at once; more get 503"
    )
    retry_after_seconds: int = Field(default=1, ge=1, le=3600, description="Retry-After sent with a 503")
    # Writes (POST/DELETE /articles) are off until a key is set; reads are open unless read_api_key is set.
    api_key: SecretStr | None = Field(default=None, description="key for POST/DELETE /articles (unset: writes off)")
    read_api_key: SecretStr | None = Field(default=None, description="key for search, ask and articles (unset: open)")
    max_write_bytes: int = Field(
        default=2_000_000, ge=1024, le=100_000_000, description="largest POST /articles body"
    )
    max_articles_per_write: int = Field(default=100, ge=1, le=10_000, description="most articles in one POST")
    max_article_chars: int = Field(default=500_000, ge=100, le=20_000_000, description="longest article text")

    @field_validator("index_dir", mode="before")
    @classmethod
    def _empty_index_dir_is_the_default(cls, value: object) -> object:
        """NEWSDESK_INDEX_DIR= (empty) means the default, as in the CLI, not the current directory."""
        if isinstance(value, str) and not value.strip():
            return DEFAULT_INDEX_DIR
        return value

    @field_validator("api_key", "read_api_key", "late_interaction_depth", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        """NEWSDESK_API_KEY= (empty) means no key, NEWSDESK_LATE_INTERACTION_DEPTH= the index's choice: as if unset."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_key", "read_api_key")
    @classmethod
    def _check_key(cls, key: SecretStr | None) -> SecretStr | None:
        # A short key can be guessed; the message shows how to make a good one.
        if key is not None and len(key.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(
                f"API keys must be at least {MIN_KEY_CHARS} characters; make one with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return key

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
