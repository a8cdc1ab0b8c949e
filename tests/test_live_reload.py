"""Live reload in a real server: new indexes are published under a steady stream of requests.

The server (uvicorn, in its own process, fake embedder) polls CURRENT every 0.2 s; the
test publishes two new indexes with `build_index`, exactly as `newsdesk index` does, while
four clients keep searching. Every request must succeed, and the new articles must appear.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest

from indexer.build import build_index
from indexer.corpus import Article, load_corpus
from indexer.embedding import FakeEmbedder
from tests.conftest import DAIMLER, REPO, SEED_CORPUS, XIAOMI_HT, HeldEmbedder
from tests.test_api_server import free_port, request, stop, wait_ready

pytestmark = pytest.mark.slow

SERVER = """
import sys, uvicorn
from api.app import create_app
from api.settings import Settings
from indexer.embedding import FakeEmbedder
uvicorn.run(create_app(Settings(index_dir=sys.argv[1]), embedder=FakeEmbedder()), host="127.0.0.1",
            port=int(sys.argv[2]), log_level="info")
"""
QUERIES = ["Daimler Denza", "Xiaomi cars", "BYD", "solar ferry", "Beijing Automotive", "battery"]
FERRY = Article("wire/solar-ferry", "Solar ferry crosses the fjord",
                "A solar ferry carried its first passengers across the Oslo fjord on Monday.", "Wire", "2024-05-06")
TRAM = Article("wire/hydrogen-tram", "Hydrogen tram starts service",
               "The city's first hydrogen tram started carrying passengers in Foshan.", "Wire", "2024-05-07")


class Stream:
    """Clients sending requests back to back on keep-alive connections, counting every outcome."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.index_ids: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Stream:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        step = number
        while not self.stop.is_set():
            step += 1
            kind = ("search", "search", "article", "ready")[step % 4]
            path = {
                "search": f"/search?k=5&q={quote(QUERIES[step % len(QUERIES)])}",
                "article": f"/articles/{DAIMLER}",
                "ready": "/readyz",
            }[kind]
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = json.loads(response.read())
                ok = response.status == 200 and (kind != "search" or body["hits"])
                detail = f"{response.status} {body}"[:300]
            except (OSError, http.client.HTTPException, ValueError) as exc:
                ok, detail = False, repr(exc)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self.lock:
                self.outcomes[kind if ok else f"{kind} FAILED"] += 1
                if not ok:
                    self.failures.append(f"{path}: {detail}")
                elif kind == "ready" and (not self.index_ids or self.index_ids[-1] != body["index_id"]):
                    self.index_ids.append(body["index_id"])
        connection.close()


def wait_for_index(port: int, index_id: str, seconds: float = 30) -> float:
    """Seconds until /readyz reports `index_id`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if request(port, "GET", "/readyz")[1].get("index_id") == index_id:
            return time.monotonic() - started
        time.sleep(0.02)
    pytest.fail(f"index {index_id} not served after {seconds}s")


def test_new_indexes_are_served_without_a_restart_or_a_failed_request(tmp_path: Path):
    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    first = build_index(articles, root, FakeEmbedder(), progress=False)
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "NEWSDESK_RELOAD_INTERVAL": "0.2"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(port)], cwd=REPO, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, server, log, seconds=60)
        assert request(port, "GET", "/search?q=solar+ferry+fjord&mode=lexical")[1]["hits"] == []
        started = time.monotonic()
        with Stream(port, clients=4) as stream:
            time.sleep(1.0)
            second = build_index([*articles, FERRY], root, FakeEmbedder(), progress=False)
            swap_one = wait_for_index(port, second.index_id)
            status, body = request(port, "GET", "/search?q=solar+ferry+fjord&k=3")
            assert status == 200 and body["hits"][0]["citation"]["article_id"] == FERRY.article_id
            time.sleep(1.0)
            remaining = [a for a in articles if a.article_id != XIAOMI_HT]
            third = build_index([*remaining, FERRY, TRAM], root, FakeEmbedder(), progress=False)
            swap_two = wait_for_index(port, third.index_id)
            time.sleep(1.0)
        seconds = time.monotonic() - started

        total = sum(stream.outcomes.values())
        print(f"\nlive reload: {total} requests in {seconds:.1f}s by 4 clients, outcomes {dict(stream.outcomes)}, "
              f"publish-to-served {swap_one:.2f}s and {swap_two:.2f}s (poll interval 0.2s)")
        assert stream.failures == [], stream.failures[:5]
        assert total >= 100, stream.outcomes
        assert stream.index_ids == [first.index_id, second.index_id, third.index_id]  # the stream saw each swap
        status, body = request(port, "GET", "/search?q=hydrogen+tram+Foshan&k=1")
        assert body["hits"][0]["citation"]["article_id"] == TRAM.article_id
        assert request(port, "GET", f"/articles/{XIAOMI_HT}")[0] == 404
        ready = request(port, "GET", "/readyz")[1]
        assert ready["articles"] == len(articles) + 1 and ready["last_reload_error"] is None
    finally:
        code = stop(server)
    server_log = log.read_text()
    assert code == 0, server_log
    assert f"replacing {first.index_id}" in server_log and f"replacing {second.index_id}" in server_log
    assert "Traceback" not in server_log


def test_a_request_in_flight_finishes_on_the_index_it_started_with(tmp_path: Path):
    """The swap happens while a search is inside the old index; it completes there, and then the new one serves."""
    import asyncio

    import httpx

    from api.app import create_app
    from api.settings import Settings

    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    embedder = HeldEmbedder("block", timeout=10)
    app = create_app(Settings(index_dir=root, reload_interval=0), embedder=embedder)

    async def scenario() -> tuple[httpx.Response, httpx.Response, str, str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                old_id = (await client.get("/readyz")).json()["index_id"]
                slow = asyncio.create_task(client.get("/search", params={"q": "block Daimler Denza", "k": 3}))
                assert await asyncio.to_thread(embedder.entered.wait, 10)
                new = await asyncio.to_thread(build_index, [FERRY, TRAM], root, FakeEmbedder(), progress=False)
                assert await app.state.manager.refresh() is True
                assert (await client.get("/readyz")).json()["index_id"] == new.index_id
                embedder.release.set()
                return await slow, await client.get("/search", params={"q": "Daimler Denza", "k": 3}), old_id, \
                    new.index_id

    in_flight, after, old_id, new_id = asyncio.run(scenario())
    assert old_id != new_id
    assert in_flight.status_code == 200
    assert in_flight.json()["hits"][0]["citation"]["article_id"] == DAIMLER  # answered by the old index
    assert after.status_code == 200
    assert {h["citation"]["article_id"] for h in after.json()["hits"]} <= {FERRY.article_id, TRAM.article_id}
