"""Dense-side vector normalisation: remove the corpus's common direction before the cosine.

Sentence vectors of one model share a common component (anisotropy): every passage has a
sizeable cosine to every query, and that shared part carries no ranking information while it
sets the cosine's scale against the BM25 share in the additive fusion. Centring subtracts
`lam` times the corpus mean chunk vector from chunks and queries, then re-normalises:

    cos'(q, c) = <n(q - lam mu), n(c - lam mu)>

lam = 0 is the shipped pipeline. Scored on the tuning splits (SciFact train, RealTimeQA dev)
over the experiment cache's vectors (base model, fp32), with the additive BM25 weight swept
too, since centring changes the cosine's scale:

    python -m eval.experiments.centering eval/results/centering-tune.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eval.experiments import fusion as F
from eval.experiments.finetune import SETS, load_lab
from indexer.analysis import analyze

LAMBDAS = (0.0, 0.5, 0.8, 1.0)
BM25_WEIGHTS = (0.7, 1.0, 1.3)


def centred(vectors: np.ndarray, mean: np.ndarray, lam: float) -> np.ndarray:
    v = vectors - lam * mean
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    rows = []
    for dataset, (tune, _) in SETS.items():
        lab = load_lab(dataset)
        split = lab.split(tune)
        terms = [analyze(t) for t in split.texts]
        lex, ceiling = lab.lexicon.scores(terms), lab.lexicon.ceiling(terms)
        mean = lab.vectors.mean(axis=0)
        for lam in LAMBDAS:
            dense = centred(lab.query_vectors[split.rows], mean, lam) @ centred(lab.vectors, mean, lam).T
            row = {"set": f"{dataset} {tune}", "lambda": lam,
                   "dense": lab.evaluate(split, F.single(lab, dense))["ndcg@10"]}
            for w in BM25_WEIGHTS:
                row[f"hybrid {w}"] = lab.evaluate(split, F.additive(lab, dense, lex, ceiling, w))["ndcg@10"]
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
