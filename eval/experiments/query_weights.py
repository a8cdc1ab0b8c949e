"""Lab: MaxSim with each query token weighted, over stored sign bits (tuning splits).

MaxSim averages the query's tokens alike, so "the", "of" and "?" count as much as the claim's
rare words. Here each query word piece t weighs w(t) and the mean becomes sum w(t) max_u cos(t, u) /
sum w(t). Schemes:

- mean:   w = 1 (what the service did before);
- idf:    BM25's idf of the word piece over the chunks, log(1 + (N - df + 0.5) / (df + 0.5)),
          from the chunks' word pieces (a piece no chunk holds weighs most);
- lexidf: the BM25 idf of the analysed word (stemmed, stopwords 0) that the piece belongs to,
          from the lexical index the service already has (no new data stored).

The chunks' token vectors are the packaged model's (cached by `eval.experiments.maxsim` in CACHE),
stored as the service stores them (sign bits); the fused top DEPTH chunks (additive fusion,
BM25 weight 1 unless given) are re-scored as `maxsim.rerank_chunks` does, with MaxSim weights
WEIGHTS.

    python -m eval.experiments.query_weights OUT.json [DEPTH[:BM25_WEIGHT] ...]
    python -m eval.experiments.query_weights plot OUT.json OUT.png

Results: eval/results/late-interaction/query-weights-tune.json and .png (eval/README.md,
"idf-weighted MaxSim").
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from eval.experiments import fusion as F
from eval.experiments.finetune import SETS, chunk_text, load_lab
from eval.experiments.maxsim import fused_chunks
from indexer.analysis import analyze, terms_with_offsets
from indexer.late_interaction import document_frequencies, idf_weights, pack_signs, unpack_signs
from indexer.onnx_embedder import _tokenizer

CACHE = "/work/cache/maxsim"
WEIGHTS = (0.5, 0.75, 1.0, 1.5, 2.0)


def piece_ids(texts: list[str]) -> list[np.ndarray]:
    """Word-piece ids without [CLS] and [SEP]: the rows of the cached token vectors."""
    return [np.array(e.ids[1:-1], dtype=np.int64) for e in _tokenizer().encode_batch(texts)]


def lexical_weights(lab, text: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Each word piece's weight: the BM25 idf of the analysed word it is part of (0 for stopwords)."""
    pieces = _tokenizer().encode(text).offsets[1:-1]
    lexicon = lab.lexicon
    unseen = np.log(1 + (lexicon.weights.shape[1] + 0.5) / 0.5)
    idf = lexicon.ceiling_weights / 2.2  # ceiling weight = idf * (k1 + 1), k1 = 1.2
    weights = np.zeros(len(pieces))
    for term, start, end in terms_with_offsets(text):
        column = lexicon.vocab.get(term)
        value = idf[column] if column is not None else unseen
        for j, (a, b) in enumerate(pieces):
            if a < end and b > start:
                weights[j] = max(weights[j], value)
    return weights if weights.sum() > 0 else np.ones(len(pieces))


def run(dataset: str, depth: int, bm25: float = 1.0) -> dict[str, object]:
    lab = load_lab(dataset)
    data = np.load(f"{CACHE}/{dataset}-tokens-base.npz")
    tok = {k: data[k] for k in data.files}
    signs = unpack_signs(pack_signs(tok["ct"]), tok["ct"].shape[1])
    split = lab.split(SETS[dataset][0])
    dense = tok["qp"][split.rows] @ tok["cp"].T
    frequencies = document_frequencies(piece_ids([chunk_text(lab, c) for c in range(len(lab.chunk_doc))]))
    chunks = len(lab.chunk_doc)
    texts = [lab.queries[q] for q in split.query_ids]
    ids = piece_ids(texts)
    schemes = {
        "mean": [np.ones(len(i)) for i in ids],
        "idf": [idf_weights(frequencies, chunks, i) for i in ids],
        "lexidf": [lexical_weights(lab, t) for t in texts],
    }
    terms = [analyze(t) for t in split.texts]
    lex, ceiling = lab.lexicon.scores(terms), lab.lexicon.ceiling(terms)
    ranked: dict[tuple[str, float], list[list[str]]] = {(s, m): [] for s in schemes for m in WEIGHTS}
    plain: list[list[str]] = []
    for i in range(len(split.query_ids)):
        cand, fused, order = fused_chunks(dense[i], lex[i], ceiling[i], bm25)
        head, tail = cand[order[:depth]], cand[order[depth:]]
        plain.append(F.docs_from_chunks(cand[order], lab.chunk_doc, lab.doc_ids))
        row = split.rows[i]
        query = tok["qt"][tok["qo"][row] : tok["qo"][row + 1]].astype(np.float32)
        assert len(query) == len(ids[i]), "token vectors and word pieces out of step"
        best = np.stack([(signs[tok["co"][c] : tok["co"][c + 1]] @ query.T).max(axis=0) for c in head.tolist()])
        for scheme, weights in schemes.items():
            late = best @ weights[i] / weights[i].sum()
            for m in WEIGHTS:
                rescored = head[np.argsort(-(fused[order[:depth]] + m * late), kind="stable")]
                docs = F.docs_from_chunks(np.concatenate([rescored, tail]), lab.chunk_doc, lab.doc_ids)
                ranked[(scheme, m)].append(docs)
    row_out: dict[str, object] = {"set": f"{dataset} {split.name}", "queries": len(split.query_ids), "depth": depth,
                                  "bm25 weight": bm25,
                                  "no late interaction": round(lab.evaluate(split, plain)["ndcg@10"], 4)}
    for (scheme, m), rankings in ranked.items():
        row_out[f"{scheme} {m:g}"] = round(lab.evaluate(split, rankings)["ndcg@10"], 4)
    return row_out


def plot(results: str, png: str) -> None:
    """nDCG@10 against the MaxSim weight, one panel per tuning split and depth, a line per scheme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.load(open(results, encoding="utf-8"))["rows"]
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.6), sharey=False)
    for ax, row in zip(np.atleast_1d(axes), rows, strict=True):
        for scheme, style in (("mean", "o--"), ("idf", "s-"), ("lexidf", "^:")):
            ax.plot(WEIGHTS, [row[f"{scheme} {m:g}"] for m in WEIGHTS], style, label=scheme)
        ax.axhline(row["no late interaction"], color="grey", lw=0.8, label="no late interaction")
        ax.set_title(f"{row['set']}, top {row['depth']} chunks", fontsize=9)
        ax.set_xlabel("MaxSim weight")
        ax.set_ylabel("nDCG@10")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("Late interaction over sign bits: query tokens weighted alike, by idf, by BM25 word idf", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    if sys.argv[1] == "plot":
        plot(sys.argv[2], sys.argv[3])
        return
    out = sys.argv[1]
    parts = [a.partition(":") for a in sys.argv[2:]]
    settings = [(int(depth), float(weight or 1.0)) for depth, _, weight in parts] or [(20, 1.0), (40, 1.0)]
    rows = []
    for depth, bm25 in settings:
        for dataset in SETS:
            started = time.perf_counter()
            rows.append(run(dataset, depth, bm25))
            print(json.dumps(rows[-1]), f"{time.perf_counter() - started:.0f} s", flush=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"machine": "shared 2-core AMD EPYC VM, CPU only", "model": "packaged all-MiniLM-L6-v2, fp32",
                   "stored": "sign bits", "rows": rows}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
