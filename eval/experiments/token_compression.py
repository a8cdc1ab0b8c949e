"""Lab: MaxSim over compressed token vectors, for an index that stores them (tuning splits).

Every chunk's token vectors (packaged model, cached by `eval.experiments.maxsim` in CACHE) are
compressed and decoded, and the fused top DEPTH chunks re-scored as `maxsim.rerank_chunks`
does (SciFact train, RealTimeQA dev; MaxSim weights 0, 0.75 and 1). `cos` is the mean cosine
of a decoded token vector to the original (for sign bits: of the unit sign vector that MaxSim
compares with the query's float vectors).

    python -m eval.experiments.token_compression fp16,int8,pq64,pq32,binary [DEPTH]

Results: eval/results/late-interaction/compression-tune.json. Sign bits (48 bytes a token)
keep nearly all the gain; the service stores them (indexer/late_interaction.py).
"""

from __future__ import annotations

import json
import sys
import time

import faiss
import numpy as np

from eval.experiments import maxsim as M
from eval.experiments.finetune import SETS, load_lab
from indexer.late_interaction import pack_signs, unpack_signs

CACHE = "/work/cache/maxsim"
BLOCK = 500_000  # token vectors coded at a time


def product_quantised(tokens: np.ndarray, bytes_per_token: int, sample: int = 200_000) -> np.ndarray:
    """FAISS product quantisation, 8 bits a sub-vector, trained on a sample of the tokens."""
    rng = np.random.default_rng(0)
    quantiser = faiss.ProductQuantizer(tokens.shape[1], bytes_per_token, 8)
    quantiser.train(tokens[rng.choice(len(tokens), min(sample, len(tokens)), replace=False)].astype(np.float32))
    out = np.empty(tokens.shape, dtype=np.float16)
    for start in range(0, len(tokens), BLOCK):
        block = tokens[start : start + BLOCK].astype(np.float32)
        out[start : start + BLOCK] = quantiser.decode(quantiser.compute_codes(block))
    return out


def int8(tokens: np.ndarray) -> np.ndarray:
    x = tokens.astype(np.float32)
    scale = np.abs(x).max(axis=1, keepdims=True) / 127
    return (np.round(x / scale) * scale).astype(np.float16)


def sign_bits(tokens: np.ndarray) -> np.ndarray:
    """What the service stores and reads back: indexer.late_interaction's own pack and unpack."""
    return unpack_signs(pack_signs(tokens), tokens.shape[1]).astype(np.float16)


METHODS = {
    "fp16": lambda t: t,
    "int8": int8,
    "pq64": lambda t: product_quantised(t, 64),
    "pq32": lambda t: product_quantised(t, 32),
    "binary": sign_bits,
}


def main() -> None:
    methods = sys.argv[1].split(",")
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rows = []
    for dataset in SETS:
        lab = load_lab(dataset)
        data = np.load(f"{CACHE}/{dataset}-tokens-base.npz")
        tok = {k: data[k] for k in data.files}
        split = lab.split(SETS[dataset][0])
        dense = tok["qp"][split.rows] @ tok["cp"].T
        raw = tok["ct"]
        for name in methods:
            started = time.perf_counter()
            tok["ct"] = METHODS[name](raw)
            sample = raw[:100_000].astype(np.float32), tok["ct"][:100_000].astype(np.float32)
            cos = np.einsum("ij,ij->i", *sample) / np.linalg.norm(sample[1], axis=1)
            ranked = M.rerank_chunks(lab, split, tok, dense, [0.0, 0.75, 1.0], depth)
            row = {"set": dataset, "method": name, "cos": round(float(cos.mean()), 4),
                   "secs": round(time.perf_counter() - started)}
            row.update({m: round(lab.evaluate(split, r)["ndcg@10"], 4) for m, r in ranked.items()})
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
