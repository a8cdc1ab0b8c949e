"""Chunk a corpus and embed every chunk with the default (fast) embedder, cached on disk for the speed measurements.

    python -m eval.speed_vectors CORPUS_DIR --out /work/cache/news-vectors

Writes, under --out: chunks.jsonl (article id, ordinal, sha256 of the embedding text)
and vectors-NNNN.npy parts of --part chunks each. Parts already written are kept, so an
interrupted run resumes where it stopped. The output is large: keep it outside the
repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from indexer.build import chunk_articles
from indexer.chunking import ChunkerConfig, embedding_text
from indexer.corpus import load_corpus
from indexer.embedding import default_embedder


def chunk_texts(corpus: Path) -> tuple[list[dict[str, object]], list[str]]:
    """Rows describing each chunk, and the exact text the embedder sees for it (as build_index makes it)."""
    logging.getLogger("indexer.corpus").setLevel(logging.ERROR)
    articles, report = load_corpus(corpus)
    print(f"{corpus}: {report.summary()}", file=sys.stderr)
    config = ChunkerConfig()
    titles = {a.article_id: a.title for a in articles}
    chunks = chunk_articles(articles, config, progress=False)
    texts = [embedding_text(titles[c.article_id], c.text, config) for c in chunks]
    rows = [
        {"article_id": c.article_id, "ordinal": c.ordinal, "sha256": hashlib.sha256(t.encode()).hexdigest()}
        for c, t in zip(chunks, texts, strict=True)
    ]
    return rows, texts


def load_vectors(out: Path) -> tuple[list[dict[str, object]], np.ndarray]:
    """The chunk rows and all vectors written so far (a prefix when the run is still going)."""
    rows = [json.loads(line) for line in (out / "chunks.jsonl").read_text().splitlines()]
    parts = sorted(out.glob("vectors-*.npy"))
    vectors = np.vstack([np.load(p) for p in parts]) if parts else np.zeros((0, 384), np.float32)
    return rows[: len(vectors)], vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--part", type=int, default=8192, help="chunks per vectors-NNNN.npy file")
    parser.add_argument("--embedder", default=None, help="auto|onnx|st (default: $NEWSDESK_EMBEDDER or auto)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows, texts = chunk_texts(args.corpus)
    print(f"{len(texts)} chunks in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    listing = args.out / "chunks.jsonl"
    listing_text = "".join(json.dumps(r) + "\n" for r in rows)
    if listing.exists() and listing.read_text() != listing_text:
        raise SystemExit(f"{listing} describes other chunks; use an empty --out directory")
    listing.write_text(listing_text)
    embedder = default_embedder(args.embedder)
    (args.out / "embedder.json").write_text(json.dumps({"model_id": embedder.model_id,
                                                        "backend": getattr(embedder, "backend", "?")}) + "\n")
    done = 0
    for number, start in enumerate(range(0, len(texts), args.part)):
        path = args.out / f"vectors-{number:04d}.npy"
        if path.exists():
            continue
        t0 = time.perf_counter()
        vectors = embedder.embed(texts[start : start + args.part])
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(path)
        done += len(vectors)
        rate = len(vectors) / (time.perf_counter() - t0)
        print(f"part {number}: {start + len(vectors)}/{len(texts)} chunks, {rate:.1f} chunks/s", file=sys.stderr,
              flush=True)
    print(f"done: embedded {done} chunks in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
