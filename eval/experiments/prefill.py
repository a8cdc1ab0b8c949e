"""Seed an index root's embedding cache with vectors from an experiment cache, so a bench build embeds nothing.

The experiment cache (eval.experiments.cache) holds fp32 sentence-transformers vectors of
exactly the texts the index build embeds (same chunker, same `embedding_text`); the build's
embedding cache is keyed by sha256 of that text and the embedder, so the build reuses them
and its figures are those of a from-scratch build. Only what is on this busy 2-core machine
is saved: the 20+ minutes of embedding again what was embedded once.

    python -m eval.experiments.prefill DATASET_DIR EXPERIMENT_CACHE_DIR INDEX_ROOT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eval.datasets import load_documents
from eval.experiments.cache import _corpus_file
from indexer.build import chunk_articles
from indexer.chunking import ChunkerConfig, embedding_text
from indexer.embedding import SentenceTransformerEmbedder
from indexer.embedding_cache import EmbeddingCache, text_key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    meta = json.loads((args.cache / "meta.json").read_text())
    config = ChunkerConfig(**meta["chunker"])
    if config != ChunkerConfig():
        print(f"note: {args.cache} used {config}, not the default chunker; the build will not find these texts",
              file=sys.stderr)
    documents = load_documents(_corpus_file(args.dataset))
    chunks = chunk_articles(documents, config, progress=False)
    titles = {d.article_id: d.title for d in documents}
    texts = [embedding_text(titles[c.article_id], c.text, config) for c in chunks]
    vectors = np.load(args.cache / "vectors.npy")
    if len(texts) != len(vectors):
        raise SystemExit(f"{len(texts)} chunks now, {len(vectors)} cached vectors: the cache is of another chunking")
    with EmbeddingCache.for_index(args.root, SentenceTransformerEmbedder(model="base")) as cache:
        cache.put_many(zip((text_key(t) for t in texts), vectors, strict=True))
        print(f"{len(cache)} vectors in {cache.path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
