"""Over NEWSDESK_MAX_CONCURRENT_SEARCHES, searches get 503 + Retry-After at once instead of queueing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from api.app import create_app
from api.settings import Settings
from indexer.embedding import FakeEmbedder
from tests.conftest import DAIMLER
from tests.test_api import assert_error
from tests.test_api_ops import ExplodingEmbedder, metric


class CountingGate(FakeEmbedder):
    """Queries containing 'hold' wait until released; counts how many are waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if any("hold" in t for t in texts):
            with self.lock:
                self.waiting += 1
            self.release.wait(timeout=20)
        return super().embed(texts)


def test_searches_over_the_limit_are_shed_with_retry_after(index_dir: Path):
    limit = 2
    embedder = CountingGate()
    settings = Settings(index_dir=index_dir, max_concurrent_searches=limit, retry_after_seconds=3, reload_interval=0)
    app = create_app(settings, embedder=embedder)

    async def scenario() -> dict[str, httpx.Response | list[httpx.Response] | str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                held = [asyncio.create_task(client.get("/search", params={"q": f"hold {n}", "mode": "dense"}))
                        for n in range(limit)]
                while embedder.waiting < limit:  # both slots taken, deterministically
                    await asyncio.sleep(0.01)
                out: dict = {
                    "search": await client.get("/search", params={"q": "Daimler"}),
                    "post": await client.post("/search", json={"q": "Daimler"}),
                    "ask": await client.post("/ask", json={"question": "Who builds the Denza?"}),
                    "article": await client.get(f"/articles/{DAIMLER}"),
                    "health": await client.get("/healthz"),
                    "metrics_during": (await client.get("/metrics")).text,
                }
                embedder.release.set()
                out["held"] = [await task for task in held]
                out["after"] = await client.get("/search", params={"q": "Daimler"})
                out["metrics_after"] = (await client.get("/metrics")).text
                return out

    out = asyncio.run(scenario())
    for name in ("search", "post", "ask"):
        response = out[name]
        assert_error(response, 503, "overloaded", "NEWSDESK_MAX_CONCURRENT_SEARCHES", "retry in 3 s")
        assert response.headers["retry-after"] == "3"
    assert out["article"].status_code == 200 and out["health"].status_code == 200  # cheap reads are not limited
    assert [r.status_code for r in out["held"]] == [200] * limit
    assert out["after"].status_code == 200
    assert metric(out["metrics_during"], "newsdesk_searches_in_flight") == limit
    assert metric(out["metrics_after"], "newsdesk_searches_in_flight") == 0
    assert metric(out["metrics_after"], "newsdesk_requests_shed_total") == 3
    assert metric(out["metrics_after"], "newsdesk_http_requests_total", endpoint="/search", method="GET",
                  status="503") == 1


def test_failed_searches_give_their_slot_back(index_dir: Path):
    settings = Settings(index_dir=index_dir, max_concurrent_searches=1, reload_interval=0)
    app = create_app(settings, embedder=ExplodingEmbedder())

    async def scenario() -> list[int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                codes = []
                for q in ("explode", "explode again", "Daimler", "Daimler"):
                    codes.append((await client.get("/search", params={"q": q, "mode": "dense"})).status_code)
                return codes

    assert asyncio.run(scenario()) == [500, 500, 200, 200]
