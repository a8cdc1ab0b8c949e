"""Laboratory: lexical pseudo-relevance feedback (RM3-style) on top of the shipped hybrid.

Issue 7 lists pseudo-relevance feedback among the lexical ideas; only the dense kind (Rocchio
on the query vector) had been measured. Here the BM25 side of the query is expanded:

1. rank with the shipped additive hybrid (cosine + BM25 share of the query);
2. take the best chunk of each of the top `docs` documents, and average their BM25 term weight
   columns (idf x saturated tf, so rare words that the feedback chunks share weigh most);
3. keep the `terms` heaviest terms, scale them to sum 1, and mix them with the query's own terms
   (also scaled to sum 1): (1 - mix) x query + mix x expansion;
4. rank again with the same fusion, the BM25 share computed with the weighted query against its
   own weighted ceiling, so it stays a share in 0..1.

Scored on the validation scheme only (held-out SciFact train and RealTimeQA dev Jul-Dec 2022),
with the vectors of a validation-scheme adapter (`--adapter-dir`, as the finetune lab caches
them) or the base model's:

    python -m eval.experiments.prf --adapter-dir /work/cache/ft/v-r16-e4 --out eval/results/prf-val.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from eval.experiments import fusion as F
from eval.experiments.finetune import SETS, held_out, load_lab, subset, vectors_file
from indexer.analysis import analyze


def expansion_weights(lab, lex, dense, ceiling, queries, docs: int, terms: int, mix: float) -> list[dict[str, float]]:
    """Per query: {term: weight}, the query's own terms mixed with the feedback chunks' heaviest terms."""
    inverse = {j: t for t, j in lab.lexicon.vocab.items()}
    columns = lab.lexicon.weights.T.tocsr()  # chunks x terms
    out = []
    for i, query in enumerate(queries):
        fused = dense[i] + np.where(ceiling[i] > 0, lex[i] / max(ceiling[i], 1e-9), 0.0)
        order = np.argsort(-fused, kind="stable")
        chosen, seen = [], set()
        for c in order:
            d = int(lab.chunk_doc[c])
            if d not in seen:
                seen.add(d)
                chosen.append(int(c))
                if len(chosen) == docs:
                    break
        feedback = np.asarray(columns[chosen].mean(axis=0)).ravel()
        best = np.argsort(-feedback)[:terms]
        best = best[feedback[best] > 0]
        own: dict[str, float] = {}
        for term in query:
            own[term] = own.get(term, 0.0) + 1.0
        weights = {t: (1 - mix) * v / sum(own.values()) for t, v in own.items()} if own else {}
        total = float(feedback[best].sum())
        for j in best:
            term = inverse[int(j)]
            weights[term] = weights.get(term, 0.0) + mix * float(feedback[j]) / total
        out.append(weights)
    return out


def run(args: argparse.Namespace) -> None:
    rows = []
    for dataset in args.sets:
        lab = load_lab(dataset)
        whole = lab.split(SETS[dataset][0])
        split = subset(whole, held_out(dataset, whole), f"{whole.name}-val")
        if args.adapter_dir is None:
            qv, cv = lab.query_vectors, lab.vectors
        else:
            data = np.load(vectors_file(args.adapter_dir, dataset))
            qv, cv = data["queries"], data["chunks"]
        dense = qv[split.rows] @ cv.T
        queries = [analyze(t) for t in split.texts]
        lex = lab.lexicon.scores(queries)
        ceiling = lab.lexicon.ceiling(queries)
        base = lab.evaluate(split, F.additive(lab, dense, lex, ceiling))["ndcg@10"]
        rows.append({"set": f"{dataset} {split.name}", "queries": len(split.query_ids), "setting": "no feedback",
                     "ndcg@10": base})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        for docs, terms, mix in itertools.product(args.docs, args.terms, args.mix):
            weights = expansion_weights(lab, lex, dense, ceiling, queries, docs, terms, mix)
            lex2 = lab.lexicon.scores(queries, weights)
            ceiling2 = lab.lexicon.ceiling(queries, weights)
            score = lab.evaluate(split, F.additive(lab, dense, lex2, ceiling2))["ndcg@10"]
            rows.append({"set": f"{dataset} {split.name}", "queries": len(split.query_ids),
                         "setting": f"docs {docs}, terms {terms}, mix {mix}", "ndcg@10": score,
                         "delta": score - base})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"adapter_dir": str(args.adapter_dir), "rows": rows}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter-dir", type=Path,
                        help="a finetune OUT folder with cached vectors (default: the base model's)")
    parser.add_argument("--sets", nargs="+", choices=tuple(SETS), default=list(SETS))
    parser.add_argument("--docs", type=int, nargs="+", default=[3, 5, 10])
    parser.add_argument("--terms", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--mix", type=float, nargs="+", default=[0.2, 0.4, 0.6])
    parser.add_argument("--out", type=Path, required=True)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
