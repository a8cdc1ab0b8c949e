"""Late interaction from MiniLM's own token vectors, added to the additive hybrid (tuning splits).

MiniLM is trained to mean-pool its token vectors into one sentence vector, so a passage's
vector averages everything it says. Its token vectors are there too, for free at query time
(the query's come out of the same forward pass as its sentence vector), and ColBERT's MaxSim
over them is a soft term match: each query token finds its closest passage token.

    maxsim(q, c) = mean over the query's tokens t of max over the chunk's tokens u of cos(t, u)

    chunk score  = cos(chunk) + w_bm25 * BM25 share + m * maxsim(q, chunk)

m = 0 is the shipped fusion. Only the top `--depth` documents of the shipped hybrid are
re-scored (a reranker); a document scores as its best chunk. [CLS] and [SEP] are left out
of both sides. Token vectors are cached per model in OUT (float16).

    python -m eval.experiments.maxsim OUT [--adapter ADAPTER.npz] [--split tune|test]

Tuning splits only by default (SciFact train, RealTimeQA dev); with the base model they are
held out from nothing (no adapter saw them), with the shipped adapter they were trained on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from eval.experiments import fusion as F
from eval.experiments.finetune import SETS, chunk_text, load_lab, merged_model
from indexer.analysis import analyze
from indexer.late_interaction import maxsim, normalise_rows

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def token_vectors(model, texts: list[str], batch: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """(token vectors float16 [n_tokens, 384], L2-normalised, offsets [n+1], pooled sentence vectors [n, 384])."""
    import torch

    model.eval()
    order = np.argsort([len(t) for t in texts], kind="stable")  # batches of like length pad little
    parts: list = [None] * len(texts)
    pooled = np.zeros((len(texts), model.get_sentence_embedding_dimension()), dtype=np.float32)
    started = time.perf_counter()
    for first in range(0, len(texts), batch):
        ids = order[first : first + batch]
        features = model.tokenize([texts[j] for j in ids])
        with torch.inference_mode():
            out = model(features)
        tokens, mask = out["token_embeddings"], features["attention_mask"]
        pooled[ids] = out["sentence_embedding"].numpy()
        for j, row, m in zip(ids.tolist(), tokens, mask, strict=True):
            n = int(m.sum())
            t = row[1 : n - 1].numpy()  # without [CLS] and [SEP]
            parts[j] = normalise_rows(t).astype(np.float16)
        if (first // batch) % 20 == 0:
            done = min(first + batch, len(texts))
            print(f"  {done}/{len(texts)} texts, {time.perf_counter() - started:.0f} s", flush=True)
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in parts])]).astype(np.int64)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    return np.vstack(parts), offsets, pooled


def cached_tokens(lab, out: Path, model, label: str):  # type: ignore[no-untyped-def]
    path = out / f"{lab.dataset}-tokens-{label}.npz"
    if not path.exists():
        print(f"{lab.dataset}: token vectors of {len(lab.chunk_doc)} chunks and {len(lab.query_ids)} queries")
        ct, co, cp = token_vectors(model, [chunk_text(lab, c) for c in range(len(lab.chunk_doc))])
        qt, qo, qp = token_vectors(model, [lab.queries[q] for q in lab.query_ids], batch=128)
        np.savez(path, ct=ct, co=co, cp=cp, qt=qt, qo=qo, qp=qp)
    data = np.load(path)
    return {k: data[k] for k in data.files}


def chunk_maxsim(q: np.ndarray, chunk_tokens: np.ndarray, offsets: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    """MaxSim (the service's own, indexer.late_interaction) of one query against the given cached chunks."""
    return maxsim(q, [chunk_tokens[offsets[c] : offsets[c + 1]] for c in chunks.tolist()])


def rerank(lab, split, tok: dict, dense: np.ndarray, weights, depth: int, best_only: bool = False,  # type: ignore[no-untyped-def]
           bm25_weight: float = 1.0):
    """Rankings per MaxSim weight: the additive hybrid's top `depth` documents re-scored.

    best_only: only each document's best fused chunk gets a MaxSim (what a reranker that
    re-encodes its candidates at query time can afford); otherwise every chunk does.
    """
    terms = [analyze(t) for t in split.texts]
    lex = lab.lexicon.scores(terms)
    ceiling = lab.lexicon.ceiling(terms)
    first = lab.doc_first
    last = np.append(first[1:], len(lab.chunk_doc))
    position = {d: i for i, d in enumerate(lab.doc_ids)}
    out: dict[float, list[list[str]]] = {m: [] for m in weights}
    alone: list[list[str]] = []
    for i in range(len(split.query_ids)):
        fused_docs = F.additive(lab, dense[i : i + 1], lex[i : i + 1], ceiling[i : i + 1], bm25_weight)[0]
        head, tail = fused_docs[:depth], fused_docs[depth:]
        docs = np.array([position[d] for d in head])
        chunks = np.concatenate([np.arange(first[d], last[d]) for d in docs])
        owner = np.concatenate([np.full(last[d] - first[d], j) for j, d in enumerate(docs)])
        share = lex[i, chunks] / ceiling[i] if ceiling[i] > 0 else np.zeros(len(chunks))
        base = dense[i, chunks] + bm25_weight * share
        if best_only:
            keep = np.array([np.flatnonzero(owner == j)[np.argmax(base[owner == j])] for j in range(len(docs))])
            chunks, owner, base = chunks[keep], owner[keep], base[keep]
        row = split.rows[i]
        q = tok["qt"][tok["qo"][row] : tok["qo"][row + 1]]
        ms = chunk_maxsim(q, tok["ct"], tok["co"], chunks)
        for m in weights:
            score = np.full(len(docs), -np.inf)
            np.maximum.at(score, owner, base + m * ms)
            order = np.argsort(-score, kind="stable")
            out[m].append([head[j] for j in order] + tail)
        score = np.full(len(docs), -np.inf)
        np.maximum.at(score, owner, ms)
        alone.append([head[j] for j in np.argsort(-score, kind="stable")] + tail)
    return out, alone


def fused_chunks(dense: np.ndarray, lex: np.ndarray, ceiling: float, bm25_weight: float = 1.0):  # type: ignore[no-untyped-def]
    """One query's candidate chunks (top 300 of each side), their additive fused scores, best first
    (the order), as the service fuses them."""
    cand = np.union1d(F.top(dense, 300), F.top(lex, 300, positive=True))
    share = lex[cand] / ceiling if ceiling > 0 else np.zeros(len(cand))
    fused = dense[cand] + bm25_weight * share
    return cand, fused, np.argsort(-fused, kind="stable")


def rerank_chunks(lab, split, tok: dict, dense: np.ndarray, weights, depth: int, bm25_weight: float = 1.0):  # type: ignore[no-untyped-def]
    """As the service would: the fused top `depth` chunks re-scored, the rest after them; document = best chunk."""
    terms = [analyze(t) for t in split.texts]
    lex = lab.lexicon.scores(terms)
    ceiling = lab.lexicon.ceiling(terms)
    out: dict[float, list[list[str]]] = {m: [] for m in weights}
    for i in range(len(split.query_ids)):
        cand, fused, order = fused_chunks(dense[i], lex[i], ceiling[i], bm25_weight)
        head, tail = cand[order[:depth]], cand[order[depth:]]
        row = split.rows[i]
        ms = chunk_maxsim(tok["qt"][tok["qo"][row] : tok["qo"][row + 1]], tok["ct"], tok["co"], head)
        for m in weights:
            rescored = head[np.argsort(-(fused[order[:depth]] + m * ms), kind="stable")]
            out[m].append(F.docs_from_chunks(np.concatenate([rescored, tail]), lab.chunk_doc, lab.doc_ids))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for the token-vector caches and results")
    parser.add_argument("--adapter", type=Path, help="LoRA adapter .npz (default: the packaged model alone)")
    parser.add_argument("--split", choices=("tune", "test"), default="tune")
    parser.add_argument("--depth", type=int, default=30, help="documents of the hybrid re-scored")
    parser.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    parser.add_argument("--best-only", action="store_true", help="MaxSim of each document's best chunk only")
    parser.add_argument("--chunks", action="store_true", help="re-score the top DEPTH chunks (not documents)")
    parser.add_argument("--sets", nargs="+", choices=tuple(SETS), default=list(SETS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    label = "base" if args.adapter is None else args.adapter.stem
    model = merged_model(args.adapter)
    model.max_seq_length = 256
    rows = []
    for dataset in args.sets:
        lab = load_lab(dataset)
        tok = cached_tokens(lab, args.out, model, label)
        split = lab.split(SETS[dataset][0 if args.split == "tune" else 1])
        dense = tok["qp"][split.rows] @ tok["cp"].T
        row = {"set": f"{dataset} {split.name}", "model": label, "queries": len(split.query_ids),
               "depth": f"{args.depth} {'chunks' if args.chunks else 'documents'}", "best_only": args.best_only}
        if args.chunks:
            ranked = rerank_chunks(lab, split, tok, dense, args.weights, args.depth)
        else:
            ranked, alone = rerank(lab, split, tok, dense, args.weights, args.depth, args.best_only)
            row["maxsim alone (rerank)"] = lab.evaluate(split, alone)["ndcg@10"]
        for m, rankings in ranked.items():
            row[f"hybrid + {m} maxsim"] = lab.evaluate(split, rankings)["ndcg@10"]
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    name = (f"maxsim-{label}-{args.split}-{'c' if args.chunks else 'd'}{args.depth}"
            f"{'-best' if args.best_only else ''}.json")
    (args.out / name).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
