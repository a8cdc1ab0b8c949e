"""Prometheus metrics: requests and latency by endpoint, and the size of the loaded index.

Each app gets its own registry, so two apps in one process (tests) never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from indexer.search import SearchIndex

UNMATCHED = "<unmatched>"  # one label for every unknown path, so scanners cannot blow up label cardinality
# nginx's "client closed request": the client disconnected before a response was sent (none was).
CLIENT_CLOSED = 499
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The service's metrics in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "newsdesk_http_requests", "HTTP requests by endpoint (route template), method and status.",
            ["endpoint", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "newsdesk_http_request_duration_seconds", "Time from request to complete response, by endpoint.",
            ["endpoint", "method"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.index_loaded = Gauge("newsdesk_index_loaded", "1 when an index is loaded and served.",
                                  registry=self.registry)
        self.index_articles = Gauge("newsdesk_index_articles", "Articles in the served index.",
                                    registry=self.registry)
        self.index_chunks = Gauge("newsdesk_index_chunks", "Chunks (passages) in the served index.",
                                  registry=self.registry)
        self.index_info = Gauge("newsdesk_index_info", "The served index's id and embedding model (value 1).",
                                ["index_id", "model_id"], registry=self.registry)
        self.index_reloads = Counter(
            "newsdesk_index_reloads", "Newly published indexes swapped in (success) or refused (failure).",
            ["result"], registry=self.registry,
        )
        self.index_reload_error = Gauge(
            "newsdesk_index_reload_error", "1 while the latest published index could not be loaded (see /readyz).",
            registry=self.registry,
        )
        self.searches_in_flight = Gauge(
            "newsdesk_searches_in_flight", "Searches and questions being answered now.", registry=self.registry,
        )
        self.requests_shed = Counter(
            "newsdesk_requests_shed", "Searches and questions refused with 503 because too many were in flight.",
            registry=self.registry,
        )

    def observe_index(self, index: SearchIndex | None) -> None:
        """Point the index gauges at `index` (None: nothing served)."""
        self.index_info.clear()
        if index is None:
            self.index_loaded.set(0)
            self.index_articles.set(0)
            self.index_chunks.set(0)
            return
        self.index_loaded.set(1)
        self.index_articles.set(index.store.article_count)
        self.index_chunks.set(index.store.chunk_count)
        self.index_info.labels(index.index_id, index.manifest.model_id).set(1)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request under its route template (/articles/{article_id:path})."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = self._endpoint(scope)
        method = scope["method"]
        # An exception before any response is a 500 (sent by Starlette outside this middleware);
        # an app that returns without responding does so because the client went away.
        status = CLIENT_CLOSED
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except ClientDisconnect:
            raise
        except Exception:
            if status == CLIENT_CLOSED:
                status = 500
            raise
        finally:
            self.metrics.latency.labels(endpoint, method).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, method, str(status)).inc()

    def _endpoint(self, scope: Scope) -> str:
        # Matched here rather than read from scope["route"] afterwards, so requests refused
        # before routing (oversized bodies) still count under their endpoint.
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return str(getattr(route, "path", UNMATCHED))
        return UNMATCHED
