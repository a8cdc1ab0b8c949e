"""Kill `newsdesk index` part way: the published index must be untouched (reliability issue)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexer.publish import BUILDS_DIR, CURRENT_NAME
from indexer.search import SearchIndex
from tests.conftest import REPO, SEED_CORPUS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUERIES = ["Which company did Daimler team up with for Denza?", "Xiaomi license", "比亞迪"]


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "indexer.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, **kwargs)


def _answers(index_dir: Path, embedder) -> list[list[tuple[str, int, int, float]]]:
    index = SearchIndex.load(index_dir, embedder)
    return [
        [(h.chunk_id, h.citation.start, h.citation.end, round(h.score, 5)) for h in index.search(q, k=5)]
        for q in QUERIES
    ]


def _big_corpus(path: Path, articles: int = 200) -> None:
    path.mkdir()
    sentences = [
        "Carmakers in region {n} weighed new battery partnerships this quarter.",
        "Officials said licence number {n} would be reviewed by regulators.",
        "Analysts expect deliveries of model {n} to rise as prices fall.",
    ]
    for n in range(articles):
        text = " ".join(s.format(n=n * 7 + i) for i in range(40) for s in sentences)
        (path / f"bulk_{n:04d}.txt").write_text(f" date 2024-01-01 Wire\nStory {n}\n\n{text}\n")


def test_sigkill_during_index_leaves_the_published_index_serving(tmp_path: Path, real_embedder):
    index_dir = tmp_path / "index"
    built = _cli("index", str(SEED_CORPUS), "--index-dir", str(index_dir))
    assert built.returncode == 0, built.stderr
    published = (index_dir / CURRENT_NAME).read_text()
    before = _answers(index_dir, real_embedder)

    big = tmp_path / "big"
    _big_corpus(big)
    process = subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", "index", str(big), "--index-dir", str(index_dir)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    # Wait until the new build directory exists (work is under way), then kill hard.
    deadline = time.monotonic() + 300
    while len(list((index_dir / BUILDS_DIR).iterdir())) < 2:
        assert process.poll() is None, "the big build finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    assert (index_dir / CURRENT_NAME).read_text() == published
    assert _answers(index_dir, real_embedder) == before
    partial = [p for p in (index_dir / BUILDS_DIR).iterdir() if p.name != published.strip()]
    assert partial, "the killed build left its directory behind"

    rebuilt = _cli("index", str(SEED_CORPUS), "--index-dir", str(index_dir))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "stale build" in rebuilt.stderr
    assert not any(p.exists() for p in partial)
    assert _answers(index_dir, real_embedder) == before
