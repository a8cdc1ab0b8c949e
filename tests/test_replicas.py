"""Two API replicas (separate processes) on one published index answer alike, before and after a publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from api.settings import Settings
from indexer.build import build_index
from indexer.corpus import Article, load_corpus
from indexer.embedding import FakeEmbedder
from indexer.publish import CURRENT_NAME
from tests.conftest import REPO, SEED_CORPUS
from tests.test_api_server import free_port, request, stop, wait_ready

pytestmark = pytest.mark.slow

QUERIES = ["Daimler BYD Denza", "Xiaomi electric car licence", "比亞迪", "Beijing automotive plant",
           "Zephyr Air merger"]
NEW_ARTICLE = Article(
    "zephyr", "Zephyr Air agrees merger",
    "Zephyr Air agreed a merger with Boreal Airways on Monday.\nThe combined airline will fly 120 aircraft.",
    "Wire", "2024-05-06",
)
# Live reload (api/reload.py, polling <index_dir>/CURRENT) is on its own branch; with it the
# replicas pick up a publish by themselves, without it the test restarts them.
LIVE_RELOAD = "reload_interval" in Settings.model_fields


class Replica:
    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "NEWSDESK_RELOAD_INTERVAL": "0.2"}
        with open(self.log, "a") as out:
            self.process = subprocess.Popen([sys.executable, str(REPO / "tests" / "replica_server.py"),
                                             str(self.root), str(self.port)],
                                            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        wait_ready(self.port, self.process, self.log, seconds=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)

    def index_id(self) -> str:
        status, body = request(self.port, "GET", "/readyz")
        return body["index_id"] if status == 200 else ""

    def answers(self) -> list[object]:
        """Every query's hits and answer, without the timing field."""
        out: list[object] = []
        for q in QUERIES:
            status, body = request(self.port, "GET", f"/search?q={quote(q)}&k=5")
            assert status == 200, body
            out.append(body["hits"])
            status, body = request(self.port, "POST", "/ask", json.dumps({"question": q + "?"}).encode(),
                                   {"Content-Type": "application/json"})
            assert status == 200, body
            out.append(body)
        return out


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Path, list[Replica]]]:
    root = tmp_path / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    started = [Replica(root, tmp_path / f"replica{i}.log") for i in range(2)]
    try:
        for replica in started:
            replica.start()
        yield root, started
    finally:
        for replica in started:
            replica.stop()


def test_two_replicas_answer_alike_before_and_after_a_publish(replicas: tuple[Path, list[Replica]]):
    root, (first, second) = replicas
    published = (root / CURRENT_NAME).read_text().strip()
    assert first.index_id() == second.index_id() == published
    before = first.answers()
    assert second.answers() == before
    assert "zephyr" not in str(before)

    articles, _ = load_corpus(SEED_CORPUS)
    build_index([*articles, NEW_ARTICLE], root, FakeEmbedder(), progress=False)  # a new build, published
    republished = (root / CURRENT_NAME).read_text().strip()
    assert republished != published

    if LIVE_RELOAD:
        pids = [first.process.pid, second.process.pid]
        deadline = time.monotonic() + 30
        while {first.index_id(), second.index_id()} != {republished}:
            assert time.monotonic() < deadline, "a replica did not pick up the publish"
            time.sleep(0.1)
        assert [first.process.pid, second.process.pid] == pids and first.process.poll() is None
    else:
        for replica in (first, second):  # no live reload on this branch: a rolling restart
            replica.stop()
            replica.start()
    assert first.index_id() == second.index_id() == republished
    after = first.answers()
    assert second.answers() == after
    assert after != before
    zephyr_hits = after[2 * QUERIES.index("Zephyr Air merger")]
    assert zephyr_hits[0]["citation"]["article_id"] == "zephyr"
