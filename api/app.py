"""The FastAPI application: search, ask, article lookup, health, readiness and metrics.

No `from __future__ import annotations` here: FastAPI must see the real request
models, which are built per app inside `create_app`.
"""

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from api.auth import KeyGuardMiddleware, require_key
from api.body_limit import BodyLimitMiddleware
from api.cors import JsonCORSMiddleware
from api.errors import ApiError, error_response, install_error_handlers
from api.holder import IndexHolder
from api.limiter import SearchLimiter
from api.metrics import CONTENT_TYPE, Metrics, MetricsMiddleware
from api.query_encoding import QueryEncodingMiddleware
from api.reload import IndexManager
from api.schemas import (
    ArticleOut,
    AskOut,
    ErrorOut,
    HealthOut,
    ReadyOut,
    SearchOut,
    SpanOut,
    request_models,
)
from api.settings import Settings
from api.writes import ARTICLES_EXAMPLE, add_write_routes, write_rules
from indexer.answer import answer_question
from indexer.embedding import Embedder
from indexer.search import Filters, SearchIndex

_SPACE = re.compile(r"\s+")
STATIC_DIR = Path(__file__).resolve().parent / "static"
DOCS_ASSETS = "/docs/assets"
ARTICLE_ROUTE = "/articles/{article_id:path}"
DOCS_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in {
        400: "Malformed JSON body",
        413: "Request body over the size limit",
        415: "Body not sent as application/json",
        422: "A parameter is missing, malformed or out of range (the message names it and its limit)",
        503: "No index loaded (see /readyz), or too many requests at once (then with Retry-After)",
    }.items()
}


async def single_valued_query(request: Request) -> None:
    """422 for a query parameter given twice (?q=a&q=b): which one was meant is not for the server to guess."""
    seen: dict[str, int] = {}
    for name, _ in request.query_params.multi_items():
        seen[name] = seen.get(name, 0) + 1
    repeated = [name for name, count in seen.items() if count > 1]
    if repeated:
        names = ", ".join(repeated)
        verb = "is" if len(repeated) == 1 else "are each"
        message = f"Query parameter {names} {verb} given more than once; send each once."
        raise ApiError(422, "invalid_parameter", message)


def create_app(
    settings: Settings | None = None, embedder: Embedder | None = None, index: SearchIndex | None = None
) -> FastAPI:
    """Build the service for `settings`; the index (and the model) load in the lifespan.

    Pass `embedder` to use another embedder than the packaged MiniLM (tests pass a fake),
    and `index` to serve an index already loaded (and checked) with that embedder.
    """
    settings = settings or Settings()
    holder = IndexHolder()
    metrics = Metrics()
    holder.on_swap(metrics.observe_index)
    manager = IndexManager(settings, holder, metrics, embedder or (index.embedder if index else None))
    limiter = SearchLimiter(settings.max_concurrent_searches, settings.retry_after_seconds, metrics)
    models = request_models(settings)
    SearchQuery, SearchBody, AskBody, ArticleQuery = (
        models.search_query, models.search_body, models.ask_body, models.article_query,
    )
    # Reads are open unless a read key is set; then the read key or the write key opens them.
    read_keys = [key for key in (settings.read_api_key, settings.api_key) if key is not None]
    read_guard = [Depends(require_key(read_keys, "Reading"))] if settings.read_api_key is not None else []
    read_errors = {**ERRORS, 401: {"model": ErrorOut, "description": "No API key, or a wrong one"}} \
        if read_guard else ERRORS

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Every admitted search gets a worker thread at once (anyio's default is 40 threads),
        # with room left for article lookups and a write; the limiter does the refusing.
        threads = anyio.to_thread.current_default_thread_limiter()
        threads.total_tokens = max(threads.total_tokens, settings.max_concurrent_searches + 8)
        await manager.start(index)
        watcher = asyncio.create_task(manager.watch()) if settings.reload_interval > 0 else None
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher
            holder.swap(None, "The service is shutting down.")

    app = FastAPI(
        title="newsdesk",
        summary="Semantic search and questions over news articles, with exact citations.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc load their scripts from a CDN, which an offline
        # machine cannot reach: /docs is served below from the packaged Swagger UI.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.manager = manager
    install_error_handlers(app, models.rules, models.examples, {
        "/search": tuple(SearchQuery.model_fields), ARTICLE_ROUTE: tuple(ArticleQuery.model_fields),
    })

    # Added innermost first: metrics see every response, CORS headers reach errors too, and
    # the API key is checked before the query string or the body is looked at.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       larger={("POST", "/articles"): settings.max_write_bytes})
    app.add_middleware(QueryEncodingMiddleware)
    app.add_middleware(KeyGuardMiddleware, routes=app.router.routes)
    if settings.cors_origins:
        app.add_middleware(
            JsonCORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "X-API-Key"], max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)

    async def run_search(params: Any) -> dict[str, Any]:
        index = holder.get()
        filters = Filters(params.source, params.date_from, params.date_to)

        def search() -> tuple[list[dict[str, object]], float]:
            started = time.perf_counter()
            hits = index.search(params.q, k=params.k, mode=params.mode, filters=filters)
            return [hit.to_dict() for hit in hits], (time.perf_counter() - started) * 1000

        with limiter.slot():
            hits, took_ms = await run_in_threadpool(search)
        return {"query": params.q, "mode": params.mode, "took_ms": round(took_ms, 2), "hits": hits}

    @app.get("/search", response_model=SearchOut, responses=read_errors, tags=["search"],
             dependencies=[*read_guard, Depends(single_valued_query)])
    async def search_get(params: Annotated[SearchQuery, Query()]) -> dict[str, Any]:  # type: ignore[valid-type]
        """Ranked passages for a query, each with its citation and highlighted terms."""
        return await run_search(params)

    @app.post("/search", response_model=SearchOut, responses=read_errors, tags=["search"], dependencies=read_guard)
    async def search_post(body: SearchBody) -> dict[str, Any]:  # type: ignore[valid-type]
        """The same as GET /search, with the fields in a JSON body."""
        return await run_search(body)

    @app.post("/ask", response_model=AskOut, responses=read_errors, tags=["search"], dependencies=read_guard)
    async def ask(body: AskBody) -> dict[str, Any]:  # type: ignore[valid-type]
        """Answer a question from the articles, citing the passages the answer comes from."""
        index = holder.get()
        with limiter.slot():
            answer = await run_in_threadpool(answer_question, index, body.question, body.k)  # type: ignore[attr-defined]
        return answer.to_dict()

    @app.get(
        ARTICLE_ROUTE, response_model=ArticleOut, tags=["articles"],
        dependencies=[*read_guard, Depends(single_valued_query)],
        responses={**read_errors, 404: {"model": ErrorOut, "description": "No article with this id"}},
    )
    async def article(article_id: str, params: Annotated[ArticleQuery, Query()]) -> dict[str, Any]:  # type: ignore[valid-type]
        """One article (what a citation links to); with start and end, also the cited span in context."""
        index = holder.get()
        found = await run_in_threadpool(index.article, article_id)
        if found is None:
            raise ApiError(404, "article_not_found", f"No article with id {article_id!r} in the index.")
        data: dict[str, Any] = {
            "article_id": found.article_id, "title": found.title, "source": found.source,
            "date": found.date, "url": found.url, "text": found.text, "span": None,
        }
        if params.start is not None and params.end is not None:  # type: ignore[attr-defined]
            data["span"] = cited_span(found.text, params.start, params.end, params.context)  # type: ignore[attr-defined]
        return data

    @app.get("/healthz", response_model=HealthOut, tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up (it says nothing about the index: see /readyz)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=ReadyOut, tags=["operations"],
             responses={503: {"model": ErrorOut, "description": "No index loaded"}})
    async def readyz() -> Any:
        """Ready to search: the index's id, model and size, or 503 with the reason."""
        if not holder.loaded:
            return error_response(503, "index_unavailable", holder.problem or "No index is loaded.")
        index = holder.get()
        loaded_at = manager.loaded_at.isoformat(timespec="seconds") if manager.loaded_at else ""
        return {
            "status": "ready", "index_id": index.index_id, "model_id": index.manifest.model_id,
            "articles": index.store.article_count, "chunks": index.store.chunk_count,
            "loaded_at": loaded_at, "last_reload_error": manager.last_error,
        }

    # HEAD for load balancers and uptime probes that check with it: the status alone.
    @app.head("/healthz", include_in_schema=False)
    async def healthz_head() -> Response:
        return Response()

    @app.head("/readyz", include_in_schema=False)
    async def readyz_head() -> Response:
        return Response(status_code=200 if holder.loaded else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics_endpoint() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.state.writer = add_write_routes(app, settings, manager, ERRORS)
    models.examples["/articles"] = ARTICLES_EXAMPLE
    models.rules.update(write_rules(settings))

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        prefix = request.scope.get("root_path", "").rstrip("/")  # behind a proxy that strips a path prefix
        assets = prefix + DOCS_ASSETS
        return get_swagger_ui_html(
            openapi_url=prefix + (app.openapi_url or "/openapi.json"), title=f"{app.title}: API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js", swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
        )

    @app.get(DOCS_ASSETS + "/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        # Only what /docs loads: the vendor folder also holds a demo page that fetches a remote spec.
        if name not in DOCS_FILES:
            raise ApiError(404, "not_found", f"No such file: {DOCS_ASSETS}/{name}.")
        return FileResponse(Path(swagger_ui_path) / name, media_type=DOCS_FILES[name])

    @app.get("/widget.js", include_in_schema=False)
    async def widget_js() -> FileResponse:
        return FileResponse(STATIC_DIR / "widget.js", media_type="text/javascript")

    @app.get("/", include_in_schema=False)
    async def index_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return app


def cited_span(text: str, start: int, end: int, context: int) -> dict[str, Any]:
    """The span text[start:end] and up to `context` characters each side, cut at word boundaries."""
    if end > len(text):
        raise ApiError(
            422, "invalid_parameter",
            f"end ({end}) is past the end of the article, which has {len(text)} characters; "
            "use the offsets of a citation.",
        )
    context_start = max(0, start - context)
    if context_start > 0 and not text[context_start - 1].isspace():
        # Drop the partial word at the cut: start after the first whitespace (or at the quote).
        space = _SPACE.search(text, context_start, start)
        context_start = space.end() if space else start
    context_end = min(len(text), end + context)
    if context_end < len(text) and not text[context_end].isspace():
        spaces = [m.start() for m in _SPACE.finditer(text, end, context_end)]
        context_end = spaces[-1] if spaces else end
    return SpanOut(
        start=start, end=end, quote=text[start:end],
        context_start=context_start, context_end=context_end, context=text[context_start:context_end],
    ).model_dump()
