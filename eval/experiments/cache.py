"""Compute (or lift out of a built index) chunk and query vectors once, so ablations run in numpy.

A cache directory holds, for one dataset and one chunking configuration:

    meta.json      chunker settings, model, corpus fingerprint, counts
    chunks.npz     doc (document position), start, end per chunk (offsets into the document text)
    vectors.npy    float32 [chunks, 384], L2-normalised, row i = chunk i
    queries.npy    float32 [queries, 384] for every query in queries.jsonl, row order = query_ids.json

Embedding is the only expensive step (minutes to an hour on a busy 2-core machine), so it
is written in slices and resumed after an interruption.

    python -m eval.experiments.cache DATASET_DIR OUT_DIR [--max-tokens N --overlap N --no-title]
                                     [--from-index INDEX_ROOT] [--whole-doc]

`--titles` embeds each document's title alone (OUT/titles.npy). `--from-index` reads the
vectors of an index built with the same chunker and corpus
(faiss reconstruct_n) instead of embedding again. `--whole-doc` embeds one text per
document (title + text, truncated by the model at 256 word pieces): the "no chunking" ablation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eval.datasets import load_documents, load_queries
from indexer.build import chunk_articles
from indexer.chunking import ChunkerConfig, embedding_text
from indexer.corpus import corpus_fingerprint

SLICE = 2048  # chunks embedded between checkpoints


def _embedder():  # type: ignore[no-untyped-def]
    from indexer.embedding import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(batch_size=64, model="base")


def _corpus_file(dataset: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (dataset / name).is_file():
            return dataset / name
    raise SystemExit(f"{dataset} has no corpus.jsonl[.gz]")


def build_cache(dataset: Path, out: Path, config: ChunkerConfig, from_index: Path | None, whole_doc: bool) -> None:
    documents = load_documents(_corpus_file(dataset))
    fingerprint = corpus_fingerprint(documents)
    out.mkdir(parents=True, exist_ok=True)
    if whole_doc:
        doc = np.arange(len(documents), dtype=np.int64)
        start = np.zeros(len(documents), dtype=np.int64)
        end = np.array([len(d.text) for d in documents], dtype=np.int64)
        texts = [f"{d.title}\n{d.text}" if d.title else d.text for d in documents]
    else:
        chunks = chunk_articles(documents, config, progress=True)
        position = {d.article_id: i for i, d in enumerate(documents)}
        doc = np.array([position[c.article_id] for c in chunks], dtype=np.int64)
        start = np.array([c.start for c in chunks], dtype=np.int64)
        end = np.array([c.end for c in chunks], dtype=np.int64)
        titles = [documents[i].title for i in doc.tolist()]
        texts = [embedding_text(t, c.text, config) for t, c in zip(titles, chunks, strict=True)]
    np.savez(out / "chunks.npz", doc=doc, start=start, end=end)
    meta = {
        "dataset": dataset.name,
        "chunker": None if whole_doc else config.to_dict(),
        "whole_doc": whole_doc,
        "corpus_fingerprint": fingerprint,
        "documents": len(documents),
        "chunks": len(texts),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{len(documents)} documents -> {len(texts)} chunks", file=sys.stderr)

    vectors_path = out / "vectors.npy"
    if not vectors_path.exists():
        if from_index is not None:
            vectors = _vectors_from_index(from_index, documents, doc, start, end, config)
        else:
            vectors = _embed_resumable(texts, out / "partial")
        np.save(vectors_path, vectors)
    _embed_queries(dataset, out)


def _vectors_from_index(
    root: Path, documents: list, doc: np.ndarray, start: np.ndarray, end: np.ndarray, config: ChunkerConfig
) -> np.ndarray:
    """The index's vectors, after checking that it embedded exactly these chunk texts.

    The corpus fingerprint also covers metadata (dates), so an index built before a loader
    fix can hold the same texts under another fingerprint: compare what was embedded instead.
    """
    import sqlite3

    import faiss

    from indexer.ivf import is_ivf
    from indexer.manifest import STORE_NAME, VECTORS_NAME, Manifest
    from indexer.publish import current_build

    build = current_build(root)
    manifest = Manifest.read(build)
    if manifest.chunker != config.to_dict():
        raise SystemExit(f"{build} used another chunker; embed instead")
    if is_ivf(manifest.faiss_factory):
        raise SystemExit(f"{build} keeps quantised vectors ({manifest.faiss_factory}); embed instead")
    with sqlite3.connect(build / STORE_NAME) as db:
        stored = db.execute(
            "SELECT a.article_id, a.title, a.text, c.start, c.end FROM chunks c "
            "JOIN articles a ON a.pos = c.article_pos ORDER BY c.pos"
        ).fetchall()
    ours = [(documents[d].article_id, documents[d].title, documents[d].text, s, e)
            for d, s, e in zip(doc.tolist(), start.tolist(), end.tolist(), strict=True)]
    if stored != ours:
        raise SystemExit(f"{build} embedded other chunk texts; embed instead")
    index = faiss.read_index(str(build / VECTORS_NAME))
    return index.reconstruct_n(0, index.ntotal).astype(np.float32)


def _embed_resumable(texts: list[str], partial: Path) -> np.ndarray:
    partial.mkdir(exist_ok=True)
    embedder = _embedder()
    parts = []
    for first in range(0, len(texts), SLICE):
        path = partial / f"{first:08d}.npy"
        if not path.exists():
            np.save(path, embedder.embed(texts[first : first + SLICE]))
            print(f"embedded {min(first + SLICE, len(texts))}/{len(texts)}", file=sys.stderr, flush=True)
        parts.append(np.load(path))
    return np.vstack(parts).astype(np.float32)


def _embed_queries(dataset: Path, out: Path) -> None:
    if (out / "queries.npy").exists():
        return
    shared = out.parent / "queries.npy"  # query vectors do not depend on chunking: share them
    queries = load_queries(dataset / "queries.jsonl")
    ids = list(queries)
    if shared.exists() and json.loads((out.parent / "query_ids.json").read_text()) == ids:
        vectors = np.load(shared)
    else:
        vectors = _embedder().embed([queries[q] for q in ids])
        np.save(shared, vectors)
        (out.parent / "query_ids.json").write_text(json.dumps(ids))
    np.save(out / "queries.npy", vectors)
    (out / "query_ids.json").write_text(json.dumps(ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--max-tokens", type=int, default=ChunkerConfig.max_tokens)
    parser.add_argument("--overlap", type=int, default=ChunkerConfig.overlap_tokens)
    parser.add_argument("--no-title", action="store_true", help="embed chunks without their document title")
    parser.add_argument("--from-index", type=Path, help="read vectors from this index root instead of embedding")
    parser.add_argument("--whole-doc", action="store_true", help="one vector per document, no chunking")
    parser.add_argument("--titles", action="store_true", help="only embed each document's title (OUT/titles.npy)")
    args = parser.parse_args()
    if args.titles:
        documents = load_documents(_corpus_file(args.dataset))
        args.out.mkdir(parents=True, exist_ok=True)
        np.save(args.out / "titles.npy", _embedder().embed([d.title or "" for d in documents]))
        return
    config = ChunkerConfig(
        max_tokens=args.max_tokens, overlap_tokens=args.overlap, title_in_embedding=not args.no_title
    )
    build_cache(args.dataset, args.out, config, args.from_index, args.whole_doc)


if __name__ == "__main__":
    main()
