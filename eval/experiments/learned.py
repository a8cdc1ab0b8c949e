"""Learned fusion: a linear ranker over per-candidate features, trained on SciFact train + RealTimeQA dev.

Candidates of a query are the union of the dense side's and the BM25 side's top documents
(document score = best chunk). Each candidate gets a few features that are computed the
same way at query time in indexer/search.py; a pairwise logistic regression (relevant vs
non-relevant candidate of the same query, both datasets weighted equally) gives one weight
vector for all data. Evaluated with nDCG@10 on every split.

    python -m eval.experiments.learned
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.experiments.fusion import top


@dataclass
class Candidates:
    """Per query: candidate document indices and their feature rows."""

    docs: list[np.ndarray]
    features: list[np.ndarray]
    labels: list[np.ndarray]
    names: list[str]


def zs(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / sd if sd > 1e-9 else np.zeros_like(v)


def mm(v: np.ndarray) -> np.ndarray:
    lo, hi = v.min(), v.max()
    return (v - lo) / (hi - lo) if hi - lo > 1e-9 else np.zeros_like(v)


def candidates(
    lab, split, dense_doc: np.ndarray, lex_doc: np.ndarray, lex_ceiling: np.ndarray, depth: int = 100
) -> Candidates:
    """Features of the union of each side's top-`depth` documents.

    lex_ceiling: per query, the BM25 score a document matching every query term at the
    saturation limit would get (sum of idf * (k1 + 1)): dividing by it makes BM25 scores
    comparable across corpora and queries.
    """
    out = Candidates([], [], [], [])
    for i, q in enumerate(split.query_ids):
        d_top, l_top = top(dense_doc[i], depth), top(lex_doc[i], depth, positive=True)
        cand = np.union1d(d_top, l_top)
        dv, lv = dense_doc[i, cand].astype(np.float64), lex_doc[i, cand].astype(np.float64)
        d_rank = np.full(len(lab.doc_ids), depth + 1.0)
        d_rank[d_top] = np.arange(1, d_top.size + 1)
        l_rank = np.full(len(lab.doc_ids), depth + 1.0)
        l_rank[l_top] = np.arange(1, l_top.size + 1)
        frac = lv / max(lex_ceiling[i], 1e-9)
        feats = {
            "cos": dv,
            "cos_z": zs(dv),
            "cos_mm": mm(dv),
            "cos_gap": dv - dv.max(),
            "lex_frac": frac,
            "lex_z": zs(lv),
            "lex_mm": mm(lv),
            "lex_gap": frac - frac.max(),
            "rrf_d": 1 / (60 + d_rank[cand]),
            "rrf_l": 1 / (60 + l_rank[cand]),
            # per-query confidence interactions: how strongly each side's best candidate matches
            "lex_z*lexmax": zs(lv) * frac.max(),
            "cos_z*cosmax": zs(dv) * dv.max(),
            "lex_z*cosmax": zs(lv) * dv.max(),
            "lex_mm*lexmax": mm(lv) * frac.max(),
        }
        out.names = list(feats)
        out.docs.append(cand)
        out.features.append(np.stack(list(feats.values()), axis=1))
        labels = split.qrels[q]
        out.labels.append(np.array([labels.get(lab.doc_ids[d], 0) for d in cand], dtype=np.float64))
    return out


def pairs(c: Candidates, columns: list[int], negatives: int = 20, weight: float = 1.0, seed: int = 0):
    """Difference vectors (relevant - non-relevant) with +1/-1 labels, `negatives` per relevant."""
    rng = np.random.default_rng(seed)
    xs, ws = [], []
    for feats, labels in zip(c.features, c.labels, strict=True):
        pos, neg = np.flatnonzero(labels > 0), np.flatnonzero(labels <= 0)
        if not pos.size or not neg.size:
            continue
        chosen = rng.choice(neg, size=min(negatives, neg.size), replace=False)
        for p in pos:
            xs.append(feats[p, columns] - feats[chosen][:, columns])
            ws.append(np.full(chosen.size, weight / (pos.size * chosen.size)))
    x = np.vstack(xs)
    w = np.concatenate(ws)
    # symmetric: each difference once positive, once negated
    return np.vstack([x, -x]), np.concatenate([np.ones(len(x)), -np.ones(len(x))]), np.concatenate([w, w])


def fit(train: list[tuple[Candidates, float]], columns: list[int], c: float = 1.0) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    parts = [pairs(cands, columns, weight=weight) for cands, weight in train]
    x = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    w = np.concatenate([p[2] for p in parts])
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=2000)
    model.fit(x, y, sample_weight=w * len(w) / w.sum())
    return model.coef_.ravel()


def ndcg(lab, split, c: Candidates, columns: list[int], coef: np.ndarray) -> float:
    from eval.metrics import ndcg_at_k

    scores = []
    for q, docs, feats in zip(split.query_ids, c.docs, c.features, strict=True):
        s = feats[:, columns] @ coef
        order = docs[np.lexsort((docs, -s))]
        scores.append(ndcg_at_k([lab.doc_ids[d] for d in order[:10]], split.qrels[q], 10))
    return float(np.mean(scores))
