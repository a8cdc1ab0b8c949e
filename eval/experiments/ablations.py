"""The ablation table of eval/README.md: every idea tried, on SciFact train/test and RealTimeQA dev/test.

Runs over the caches of eval.experiments.cache (chunk and query vectors computed once):

    python -m eval.experiments.cache /work/shared/data/scifact /work/cache/quality/scifact/c160o32t
    python -m eval.experiments.cache /work/shared/data/realtimeqa /work/cache/quality/realtimeqa/c160o32t
    python -m eval.experiments.ablations > /work/cache/quality/ablations.md

Decisions were taken on SciFact train and RealTimeQA dev; the test columns are reported,
never used to choose. The fusion rows replace the whole fusion; every later row changes one
thing of the chosen configuration (additive fusion: cosine + 1.0 x BM25 / ceiling, chunk
level, document = best chunk, 300 candidates per side as `search_articles(k=100)` uses).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

import numpy as np

from eval.experiments import fusion as F
from eval.experiments import learned as L
from eval.experiments.lab import CACHE, Lab
from indexer.analysis import STOPWORDS, analyze

SETS = {"scifact": ("train", "test"), "realtimeqa": ("dev", "test")}
CHOSEN = {"alpha": 0.75, "norm": "zscore", "depth": 300}  # the normalised-fusion runner-up
WEIGHT = 1.0  # the chosen additive fusion's BM25-coverage weight

_TOKEN = re.compile(r"[^\W_]+")
_COMPOUND = re.compile(r"[^\W_]+(?:[-/.][^\W_]+)+")


def _stemmer() -> Callable[[str], str]:
    import Stemmer

    return Stemmer.Stemmer("english").stemWord


def no_stopwords(text: str) -> list[str]:
    stem = _stemmer()
    return [stem(w.lower()) for w in _TOKEN.findall(text)]


def no_stemming(text: str) -> list[str]:
    return [w.lower() for w in _TOKEN.findall(text) if w.lower() not in STOPWORDS]


def hyphen_join(text: str) -> list[str]:
    """Also index 'IL-6' / 'COVID-19' as one joined term ('il6', 'covid19')."""
    return analyze(text) + [re.sub(r"[-/.]", "", m.group().lower()) for m in _COMPOUND.finditer(text)]


def with_bigrams(text: str) -> list[str]:
    terms = analyze(text)
    return terms + [f"{a}_{b}" for a, b in zip(terms, terms[1:], strict=False)]


class Runner:
    """Score matrices per (dataset, split), built lazily and shared by the rows."""

    def __init__(self, cache: str = "c160o32t") -> None:
        self.labs = {ds: Lab(ds, cache) for ds in SETS}
        self.splits = {(ds, n): self.labs[ds].split(n) for ds, names in SETS.items() for n in names}
        self._lexicons: dict = {}
        self._dense: dict = {}

    def lexicon(self, ds: str, analyzer=analyze, **kw):
        key = (ds, analyzer.__name__, tuple(sorted(kw.items())))
        if key not in self._lexicons:
            self._lexicons[key] = self.labs[ds].chunk_lexicon(analyzer, **kw)
        return self._lexicons[key]

    def dense(self, ds: str, n: str) -> np.ndarray:
        if (ds, n) not in self._dense:
            self._dense[(ds, n)] = self.labs[ds].dense(self.splits[(ds, n)])
        return self._dense[(ds, n)]

    def lex(self, ds: str, n: str, analyzer=analyze, **kw) -> np.ndarray:
        s = self.splits[(ds, n)]
        return self.lexicon(ds, analyzer, **kw).scores([analyzer(t) for t in s.texts])

    def ceiling(self, ds: str, n: str, analyzer=analyze, **kw) -> np.ndarray:
        s = self.splits[(ds, n)]
        return self.lexicon(ds, analyzer, **kw).ceiling([analyzer(t) for t in s.texts])

    def row(self, label: str, fn) -> list[float]:
        """fn(lab, split, ds, n) -> per-query rankings or doc score matrix; nDCG@10 for every split."""
        values = []
        for (ds, n), split in self.splits.items():
            lab = self.labs[ds]
            values.append(lab.evaluate(split, fn(lab, split, ds, n))["ndcg@10"])
        print(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + " |", flush=True)
        return values


def chosen(r: Runner, dense_fn=None, lex_fn=None, **overrides):
    """The chosen chunk-level fusion, with one side's scores or a setting replaced."""
    settings = {**CHOSEN, **overrides}

    def fn(lab, split, ds, n):
        dense = dense_fn(lab, split, ds, n) if dense_fn else r.dense(ds, n)
        lex = lex_fn(lab, split, ds, n) if lex_fn else r.lex(ds, n)
        return F.baseline(lab, dense, lex, settings["alpha"], settings["depth"], settings["norm"])

    return fn


def best(r: Runner, dense_fn=None, analyzer=analyze, weight: float = WEIGHT, **lex_kw):
    """The chosen additive fusion, with the dense scores or the BM25 side replaced."""

    def fn(lab, split, ds, n):
        dense = dense_fn(lab, split, ds, n) if dense_fn else r.dense(ds, n)
        lex = r.lex(ds, n, analyzer, **lex_kw)
        return F.additive(lab, dense, lex, r.ceiling(ds, n, analyzer, **lex_kw), weight)

    return fn


def doc_level(r: Runner, dense_agg=None, lex_doc=None, **overrides):
    settings = {**CHOSEN, **overrides}

    def fn(lab, split, ds, n):
        dense = r.dense(ds, n)
        dd = dense_agg(lab, dense) if dense_agg else lab.max_per_doc(dense)
        ld = lex_doc(lab, split, ds, n) if lex_doc else lab.max_per_doc(r.lex(ds, n))
        return F.doc_fusion(dd, ld, settings["alpha"], settings["norm"], settings["depth"])

    return fn


def main() -> None:
    r = Runner()
    print("| idea | SciFact train | SciFact test | RealTimeQA dev | RealTimeQA test |")
    print("|---|---|---|---|---|")
    r.row("dense only (best chunk)", lambda lab, s, ds, n: F.single(lab, r.dense(ds, n)))
    r.row("BM25 only (best chunk)", lambda lab, s, ds, n: F.single(lab, r.lex(ds, n), positive=True))
    for alpha in (0.5, 0.6, 0.7, 0.75, 0.8):
        tag = " (base: shipped)" if alpha == 0.5 else ""
        r.row(f"min-max convex, dense weight {alpha}{tag}",
              lambda lab, s, ds, n, a=alpha: F.baseline(lab, r.dense(ds, n), r.lex(ds, n), a, 300, "minmax"))
    for alpha in (0.5, 0.6, 0.7, 0.75, 0.8):
        r.row(f"z-score convex, dense weight {alpha}", chosen(r, alpha=alpha))
    r.row("z-score 0.75, candidate depth 100 per side", chosen(r, depth=100))
    r.row("normal-CDF of z-scores, dense weight 0.75", chosen(r, norm="cdf"))
    r.row("RRF (k=60), equal weights, document level", doc_level(r, norm="rrf", alpha=0.5))
    r.row("RRF (k=60), dense weight 0.75, document level", doc_level(r, norm="rrf"))
    r.row("max-normalised convex 0.75, document level", doc_level(r, norm="maxnorm"))
    r.row("z-score 0.75 fused at document level", doc_level(r))
    r.row("min-max convex, dense weight 0.9 - 0.7 x BM25 coverage of the query (adaptive)",
          lambda lab, s, ds, n: F.adaptive_convex(lab, r.dense(ds, n), r.lex(ds, n), r.ceiling(ds, n), 0.9, 0.7))
    r.row("additive: cosine + 0.2 x min-max BM25", lambda lab, s, ds, n: F.additive(
        lab, r.dense(ds, n), r.lex(ds, n), r.ceiling(ds, n), 0.2, lexical="minmax"))
    for weight in (0.6, 0.8, 1.0, 1.3):
        tag = " **(chosen)**" if weight == WEIGHT else ""
        r.row(f"additive: cosine + {weight} x BM25 / ceiling{tag}", best(r, weight=weight))
    r.row("... with candidate depth 100 per side", lambda lab, s, ds, n: F.additive(
        lab, r.dense(ds, n), r.lex(ds, n), r.ceiling(ds, n), WEIGHT, depth=100))
    first_counts = {}

    def counts(lab):
        if lab.dataset not in first_counts:
            first_counts[lab.dataset] = np.diff(np.append(lab.doc_first, len(lab.chunk_doc)))
        return first_counts[lab.dataset]

    def doc_additive(dense_agg=None, lex_doc=None):
        def fn(lab, s, ds, n):
            dense = r.dense(ds, n)
            dd = dense_agg(lab, dense) if dense_agg else lab.max_per_doc(dense)
            qt = [analyze(t) for t in s.texts]
            if lex_doc:
                lexicon = r.lexicon(ds, unit="doc")
                ld, ceil = lexicon.scores(qt), lexicon.ceiling(qt)
            else:
                ld, ceil = lab.max_per_doc(r.lex(ds, n)), r.ceiling(ds, n)
            return dd + WEIGHT * ld / np.maximum(ceil, 1e-9)[:, None]
        return fn

    r.row("document = best chunk + 0.2 x mean chunk (dense)",
          doc_additive(lambda lab, d: lab.max_per_doc(d)
                       + 0.2 * np.add.reduceat(d, lab.doc_first, axis=1) / counts(lab)))
    r.row("document = soft max of chunks (logsumexp, T=0.05)",
          doc_additive(lambda lab, d: 0.05 * np.log(
              np.add.reduceat(np.exp((d - d.max(1, keepdims=True)) / 0.05), lab.doc_first, axis=1))
              + d.max(1, keepdims=True)))
    r.row("BM25 over whole documents (not chunks)", doc_additive(lex_doc=True))
    r.row("BM25 k1=0.9 b=0.4 (Pyserini)", best(r, k1=0.9, b=0.4))
    r.row("BM25 k1=1.5", best(r, k1=1.5))
    r.row("BM25 b=0.9", best(r, b=0.9))
    r.row("title twice in BM25 text", best(r, title=2))
    r.row("no title in BM25 text", best(r, title=0))
    r.row("analysis: no stopword removal", best(r, analyzer=no_stopwords))
    r.row("analysis: no stemming", best(r, analyzer=no_stemming))
    r.row("analysis: hyphenated/number compounds also joined", best(r, analyzer=hyphen_join))
    r.row("analysis: word bigrams added", best(r, analyzer=with_bigrams))

    def rocchio(lab, s, ds, n, m=3, beta=0.5):
        dense = r.dense(ds, n)
        first = lab.max_per_doc(dense) + WEIGHT * lab.max_per_doc(r.lex(ds, n)) / np.maximum(
            r.ceiling(ds, n), 1e-9)[:, None]
        feedback = F.best_chunk_vectors(lab, dense, first, m)
        return F.rocchio(lab.query_vectors[s.rows], feedback, beta) @ lab.vectors.T

    r.row("dense PRF (Rocchio, top 3 fused docs, beta 0.5)", best(r, dense_fn=rocchio))
    r.row("dense PRF (Rocchio, top 10 fused docs, beta 0.3)",
          best(r, dense_fn=lambda lab, s, ds, n: rocchio(lab, s, ds, n, 10, 0.3)))

    # Learned fusion: pairwise logistic regression on SciFact train + RealTimeQA dev.
    cands = {}
    for (ds, n), s in r.splits.items():
        lab = r.labs[ds]
        qt = [analyze(t) for t in s.texts]
        cands[(ds, n)] = L.candidates(lab, s, lab.max_per_doc(r.dense(ds, n)), lab.max_per_doc(r.lex(ds, n)),
                                      r.lexicon(ds).ceiling(qt))
    names = cands[("scifact", "train")].names
    for label, cols in [
        ("learned fusion: z-scores", ["cos_z", "lex_z"]),
        ("learned fusion: raw cosine + BM25/ceiling + z-scores", ["cos", "lex_frac", "cos_z", "lex_z"]),
        ("learned fusion: all 14 features (scores, ranks, confidence interactions)", names),
    ]:
        idx = [names.index(c) for c in cols]
        coef = L.fit([(cands[("scifact", "train")], 1.0), (cands[("realtimeqa", "dev")], 1.0)], idx)
        values = [L.ndcg(r.labs[ds], s, cands[(ds, n)], idx, coef) for (ds, n), s in r.splits.items()]
        print(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + " |", flush=True)

    # Other chunkings (their own caches), where computed.
    for cache, note in [("c96o16t", "chunks of 96 tokens, overlap 16"), ("c32o8t", "chunks of 32 tokens, overlap 8")]:
        present = [ds for ds in SETS if (CACHE / ds / cache / "vectors.npy").exists()]
        if not present:
            continue
        values = []
        for ds, names_ in SETS.items():
            if ds not in present:
                values += ["n/a", "n/a"]
                continue
            lab = Lab(ds, cache)
            lexicon = lab.chunk_lexicon()
            for n in names_:
                s = lab.split(n)
                lex = lexicon.scores([analyze(t) for t in s.texts])
                ceiling = lexicon.ceiling([analyze(t) for t in s.texts])
                ranked = F.additive(lab, lab.dense(s), lex, ceiling, WEIGHT)
                values.append(f"{lab.evaluate(s, ranked)['ndcg@10']:.4f}")
        print(f"| {note} | " + " | ".join(values) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
