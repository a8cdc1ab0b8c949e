"""Fusion variants over score matrices (queries x chunks), each returning per-query document rankings.

`baseline` is the shipped pipeline before this work (SearchIndex.rank + search_articles):
dense top-`depth` chunks and BM25 top-`depth` chunks, union, min-max each side over the
candidates, convex combination, each document scored by its best fused chunk.
"""

from __future__ import annotations

import numpy as np


def top(scores: np.ndarray, k: int, positive: bool = False) -> np.ndarray:
    """Indices of the k highest values (only > 0 if positive), best first, ties by index."""
    cand = np.flatnonzero(scores > 0) if positive else np.arange(scores.size)
    if cand.size > k:
        cand = cand[np.argpartition(-scores[cand], k - 1)[:k]]
    return cand[np.lexsort((cand, -scores[cand]))]


def minmax(v: np.ndarray) -> np.ndarray:
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        return np.ones_like(v) if hi > 0 else np.zeros_like(v)
    return (v - lo) / (hi - lo)


def zscore(v: np.ndarray) -> np.ndarray:
    sd = float(v.std())
    return (v - v.mean()) / sd if sd > 1e-12 else np.zeros_like(v)


def cdf(v: np.ndarray) -> np.ndarray:
    """Normal CDF of the z-scores (logistic approximation): bounded in (0, 1), top candidates near 1."""
    return 1.0 / (1.0 + np.exp(-1.702 * zscore(v)))


def docs_from_chunks(chunk_order: np.ndarray, chunk_doc: np.ndarray, doc_ids: list[str], k: int = 100) -> list[str]:
    """Documents in the order of their best chunk."""
    seen: dict[str, None] = {}
    for c in chunk_order.tolist():
        seen.setdefault(doc_ids[chunk_doc[c]], None)
        if len(seen) >= k:
            break
    return list(seen)


def baseline(
    lab, dense: np.ndarray, lex: np.ndarray, alpha: float = 0.5, depth: int = 300, norm: str = "minmax"
) -> list[list[str]]:
    """The pre-existing hybrid: chunk-level min-max convex fusion, document = best chunk."""
    f = {"minmax": minmax, "zscore": zscore, "cdf": cdf}[norm]
    out = []
    for i in range(dense.shape[0]):
        d_top = top(dense[i], depth)
        l_top = top(lex[i], depth, positive=True)
        cand = np.union1d(d_top, l_top)
        fused = alpha * f(dense[i, cand].astype(np.float64)) + (1 - alpha) * f(lex[i, cand].astype(np.float64))
        order = cand[np.argsort(-fused, kind="stable")][:depth]
        out.append(docs_from_chunks(order, lab.chunk_doc, lab.doc_ids))
    return out


def single(lab, scores: np.ndarray, positive: bool = False, depth: int = 300) -> list[list[str]]:
    """One side alone: documents by best chunk."""
    return [
        docs_from_chunks(top(scores[i], depth, positive), lab.chunk_doc, lab.doc_ids) for i in range(scores.shape[0])
    ]


def doc_fusion(
    dense_doc: np.ndarray,
    lex_doc: np.ndarray,
    alpha: float,
    norm: str = "minmax",
    depth: int = 100,
    rrf_k: float = 60.0,
) -> np.ndarray:
    """Fuse document score matrices; returns a document score matrix (-inf outside the candidates).

    norm: minmax / zscore over the union of each side's top-`depth` documents;
    'rrf' (weighted: alpha / (k + rank) + (1 - alpha) / (k + rank)); 'minmax_full' over all docs.
    """
    n_q, n_d = dense_doc.shape
    out = np.full((n_q, n_d), -np.inf, dtype=np.float64)
    for i in range(n_q):
        d_top = top(dense_doc[i], depth)
        l_top = top(lex_doc[i], depth, positive=True)
        cand = np.union1d(d_top, l_top)
        if norm == "rrf":
            s = np.zeros(n_d)
            s[d_top] += alpha / (rrf_k + np.arange(1, d_top.size + 1))
            s[l_top] += (1 - alpha) / (rrf_k + np.arange(1, l_top.size + 1))
            out[i, cand] = s[cand]
            continue
        dv, lv = dense_doc[i, cand].astype(np.float64), lex_doc[i, cand].astype(np.float64)
        if norm == "minmax":
            f = alpha * minmax(dv) + (1 - alpha) * minmax(lv)
        elif norm == "zscore":
            f = alpha * zscore(dv) + (1 - alpha) * zscore(lv)
        elif norm == "minmax_top":  # normalise by each side's own top-depth range (not the union's)
            dr, lr = dense_doc[i, d_top], lex_doc[i, l_top] if l_top.size else np.zeros(1)
            dn = (dv - dr.min()) / max(dr.max() - dr.min(), 1e-9)
            ln = (lv - lr.min()) / max(lr.max() - lr.min(), 1e-9)
            f = alpha * dn + (1 - alpha) * ln
        elif norm == "maxnorm":  # divide by the side's max: keeps the zero point (BM25 0, cosine 0)
            f = alpha * dv / max(dv.max(), 1e-9) + (1 - alpha) * lv / max(lv.max(), 1e-9)
        else:
            raise ValueError(norm)
        out[i, cand] = f
    return out


def best_chunk_vectors(lab, dense_chunk: np.ndarray, fused_doc: np.ndarray, m: int) -> np.ndarray:
    """For each query, the mean of the best-matching chunk vectors of its top-m fused documents."""
    out = np.zeros((dense_chunk.shape[0], lab.vectors.shape[1]), dtype=np.float32)
    first = lab.doc_first
    last = np.append(first[1:], len(lab.chunk_doc))
    for i in range(dense_chunk.shape[0]):
        docs = top(fused_doc[i], m)
        chunks = [first[d] + int(np.argmax(dense_chunk[i, first[d] : last[d]])) for d in docs]
        out[i] = lab.vectors[chunks].mean(axis=0)
    return out


def rocchio(q: np.ndarray, feedback: np.ndarray, beta: float) -> np.ndarray:
    """q + beta * feedback centroid, re-normalised."""
    v = q + beta * feedback
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def additive(
    lab, dense: np.ndarray, lex: np.ndarray, ceiling: np.ndarray, weight: float = 1.0, depth: int = 300,
    lexical: str = "coverage",
) -> list[list[str]]:
    """The chosen fusion: cosine + weight * BM25 / ceiling (the share of the query matched), per chunk.

    lexical="minmax" adds min-max normalised BM25 instead (the ablation of the ceiling).
    """
    out = []
    for i in range(dense.shape[0]):
        cand = np.union1d(top(dense[i], depth), top(lex[i], depth, positive=True))
        values = lex[i, cand].astype(np.float64)
        share = values / ceiling[i] if lexical == "coverage" and ceiling[i] > 0 else minmax(values)
        fused = dense[i, cand] + weight * share
        out.append(docs_from_chunks(cand[np.argsort(-fused, kind="stable")][:depth], lab.chunk_doc, lab.doc_ids))
    return out


def adaptive_convex(
    lab, dense: np.ndarray, lex: np.ndarray, ceiling: np.ndarray, a0: float, slope: float, depth: int = 300
) -> list[list[str]]:
    """Min-max convex fusion whose dense weight is a0 - slope * (best BM25 / ceiling), clipped to 0..1."""
    out = []
    for i in range(dense.shape[0]):
        cand = np.union1d(top(dense[i], depth), top(lex[i], depth, positive=True))
        coverage = float(lex[i].max() / ceiling[i]) if ceiling[i] > 0 else 0.0
        a = min(1.0, max(0.0, a0 - slope * coverage))
        fused = a * minmax(dense[i, cand].astype(np.float64)) + (1 - a) * minmax(lex[i, cand].astype(np.float64))
        out.append(docs_from_chunks(cand[np.argsort(-fused, kind="stable")][:depth], lab.chunk_doc, lab.doc_ids))
    return out
