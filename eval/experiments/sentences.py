"""Sentence-level dense evidence added to the chunk-level hybrid (validation scheme only).

A 160-token chunk's vector averages several statements; a short claim or question usually
matches one of them. This scores each chunk also by its best sentence (cosine of the query
to "title + sentence", sentences from `indexer.sentences.split_sentences`, each assigned to
the chunk that holds its start) and adds that to the additive hybrid:

    chunk score = cos(chunk) + w_bm25 * BM25 share + s * (best sentence cos - cos(chunk))

s = 0 is the shipped fusion; s = 1 replaces the chunk cosine by the best sentence's. Run
with a validation-scheme adapter, scored on the held-out parts of SciFact train and
RealTimeQA dev only (the adapter never saw them):

    python -m eval.experiments.sentences /work/cache/ft/v-r16-e4 OUT.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eval.experiments import fusion as F
from eval.experiments.finetune import (
    SETS,
    held_out,
    load_lab,
    merged_model,
    subset,
    tuned_vectors,
    vectors_file,
)
from indexer.analysis import analyze
from indexer.sentences import split_sentences


def sentence_layout(lab) -> tuple[list[str], np.ndarray]:  # type: ignore[no-untyped-def]
    """Embedding texts of every sentence and the chunk each belongs to (the chunk holding its start)."""
    texts, owner = [], []
    first = lab.doc_first
    last = np.append(first[1:], len(lab.chunk_doc))
    for d, doc in enumerate(lab.documents):
        starts = lab.chunk_start[first[d] : last[d]]
        for s, e in split_sentences(doc.text):
            c = first[d] + max(0, int(np.searchsorted(starts, s, side="right")) - 1)
            texts.append(f"{doc.title}\n{doc.text[s:e]}" if doc.title else doc.text[s:e])
            owner.append(c)
    return texts, np.asarray(owner)


def sentence_vectors(lab, out: Path, model) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    path = vectors_file(out, lab.dataset, "sentences")
    if not path.exists():
        texts, owner = sentence_layout(lab)
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=128, normalize_embeddings=True, show_progress_bar=True)
        print(f"{lab.dataset}: {len(texts)} sentences embedded in {time.perf_counter() - started:.0f} s", flush=True)
        np.savez(path, vectors=vectors.astype(np.float32), owner=owner)
    data = np.load(path)
    return data["vectors"], data["owner"]


def best_sentence_per_chunk(cos: np.ndarray, owner: np.ndarray, n_chunks: int, fallback: np.ndarray) -> np.ndarray:
    """queries x chunks: the best sentence cosine within each chunk (the chunk's own if it has none)."""
    order = np.argsort(owner, kind="stable")
    owner_sorted = owner[order]
    starts = np.searchsorted(owner_sorted, np.arange(n_chunks))
    has = np.diff(np.append(starts, len(owner_sorted))) > 0
    best = fallback.copy()
    reduced = np.maximum.reduceat(cos[:, order], np.minimum(starts, len(owner_sorted) - 1), axis=1)
    best[:, has] = reduced[:, has]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapter_dir", type=Path, help="a validation-scheme adapter (finetune train --scheme val)")
    parser.add_argument("out", type=Path, help="JSON file for the results")
    parser.add_argument("--shares", default="0,0.1,0.2,0.3,0.5,0.7,1.0")
    parser.add_argument("--weights", default="1.0", help="BM25 weights of the additive fusion")
    args = parser.parse_args()
    shares = [float(x) for x in args.shares.split(",")]
    weights = [float(x) for x in args.weights.split(",")]
    model = merged_model(args.adapter_dir / "adapter.npz")
    rows = []
    for dataset in SETS:
        tune, _ = SETS[dataset]
        lab = load_lab(dataset)
        chunk_vectors, query_vectors = tuned_vectors(lab, args.adapter_dir, model)
        sent_vectors, owner = sentence_vectors(lab, args.adapter_dir, model)
        whole = lab.split(tune)
        split = subset(whole, held_out(dataset, whole), f"{tune}-val")
        q = query_vectors[split.rows]
        chunk_cos = q @ chunk_vectors.T
        best = best_sentence_per_chunk(q @ sent_vectors.T, owner, len(lab.chunk_doc), chunk_cos)
        terms = [analyze(t) for t in split.texts]
        lex, ceiling = lab.lexicon.scores(terms), lab.lexicon.ceiling(terms)
        row = {"set": f"{dataset} {split.name}", "queries": len(split.query_ids),
               "sentences": int(len(owner)), "chunks": int(len(lab.chunk_doc))}
        row["sentence dense only"] = lab.evaluate(split, F.single(lab, best))["ndcg@10"]
        for w in weights:
            for s in shares:
                dense = chunk_cos + s * (best - chunk_cos)
                rankings = F.additive(lab, dense, lex, ceiling, w)
                row[f"bm25 {w}, sentence share {s}"] = lab.evaluate(split, rankings)["ndcg@10"]
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
