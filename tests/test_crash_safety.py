"""Kill `newsdesk index` part way: the published index must be untouched (reliability issue)."""

from __future__ import annotations

import hashlib
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

pytestmark = pytest.mark.slow

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


def _digests(build: Path) -> dict[str, str]:
    """sha256 of every file in a build directory, by relative path."""
    return {
        str(path.relative_to(build)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(build.rglob("*")) if path.is_file()
    }


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


@pytest.mark.integration
def test_sigkill_during_index_leaves_the_published_index_serving(tmp_path: Path, real_embedder):
    index_dir = tmp_path / "index"
    built = _cli("index", str(SEED_CORPUS), "--index-dir", str(index_dir))
    assert built.returncode == 0, built.stderr
    published = (index_dir / CURRENT_NAME).read_text()
    files_before = _digests(index_dir / BUILDS_DIR / published.strip())
    before = _answers(index_dir, real_embedder)

    big = tmp_path / "big"
    _big_corpus(big)
    started = time.monotonic()
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
    killed_after = time.monotonic() - started
    process.wait()
    assert process.returncode == -signal.SIGKILL

    assert (index_dir / CURRENT_NAME).read_text() == published
    assert _digests(index_dir / BUILDS_DIR / published.strip()) == files_before  # not a byte changed
    assert _answers(index_dir, real_embedder) == before
    partial = [p for p in (index_dir / BUILDS_DIR).iterdir() if p.name != published.strip()]
    assert partial, "the killed build left its directory behind"
    left = sorted(str(f.relative_to(partial[0])) for f in partial[0].rglob("*"))
    print(f"\ncrash safety: SIGKILL {killed_after:.1f}s into indexing 200 articles; partial build held {left}; "
          f"published build's {len(files_before)} files byte-identical; {len(QUERIES)} queries x 5 hits identical")

    rebuilt = _cli("index", str(SEED_CORPUS), "--index-dir", str(index_dir))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "stale build" in rebuilt.stderr
    assert not any(p.exists() for p in partial)
    assert _answers(index_dir, real_embedder) == before


# `newsdesk index` with the fake embedder, whose chunk-store write stops half way: it writes
# half of a real store file, says so, and waits to be killed (the worst moment: vectors and
# BM25 written, the store half written, no manifest).
STALLED_INDEX = """
import sys, time
import indexer.build, indexer.cli
from indexer.embedding import FakeEmbedder
from indexer.store import write_store

def half_written(path, articles, chunks):
    write_store(path, articles, chunks)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    print("STORE HALF WRITTEN", flush=True)
    time.sleep(600)

indexer.build.write_store = half_written
indexer.cli._embedder = lambda *args, **kwargs: FakeEmbedder()
sys.exit(indexer.cli.main(["index", sys.argv[1], "--index-dir", sys.argv[2]]))
"""


def test_sigkill_while_index_files_are_half_written(tmp_path: Path):
    from indexer.build import index_corpus
    from indexer.embedding import FakeEmbedder

    index_dir = tmp_path / "index"
    first = index_corpus(SEED_CORPUS, index_dir, FakeEmbedder(), progress=False)
    files_before = _digests(first.path)
    before = [[h.chunk_id for h in SearchIndex.load(index_dir, FakeEmbedder()).search(q, k=5)] for q in QUERIES]

    big = tmp_path / "big"
    _big_corpus(big, articles=50)
    process = subprocess.Popen([sys.executable, "-c", STALLED_INDEX, str(big), str(index_dir)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "STORE HALF WRITTEN"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    partial = next(p for p in (index_dir / BUILDS_DIR).iterdir() if p.name != first.index_id)
    left = sorted(str(f.relative_to(partial)) for f in partial.rglob("*") if f.is_file())
    assert {"vectors.faiss", "chunks.sqlite"} <= set(left) and "manifest.json" not in left
    assert (index_dir / CURRENT_NAME).read_text().strip() == first.index_id
    assert _digests(first.path) == files_before
    after = [[h.chunk_id for h in SearchIndex.load(index_dir, FakeEmbedder()).search(q, k=5)] for q in QUERIES]
    assert after == before
    print(f"\ncrash safety: SIGKILL with the store half written; partial build held {left}; "
          f"published build's {len(files_before)} files byte-identical; answers identical")

    again = index_corpus(big, index_dir, FakeEmbedder(), progress=False)
    assert not partial.exists()
    assert (index_dir / CURRENT_NAME).read_text().strip() == again.index_id and again.articles == 50
