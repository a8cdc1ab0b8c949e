"""Laboratory: would keeping some of MiniLM's layers in fp32 win back what int8 costs?

The shipped embedder quantizes every MatMul and Attention weight of the fused graph to int8
(indexer/onnx_embedder.py). With the adapter, int8 costs about 0.004 nDCG@10 on SciFact test
against fp32. This exports the same fused graph, quantizes it with some nodes left in fp32, and
measures each variant against the fp32 graph on tuning texts only (no labels are read):

- cosine of each text's vector to its fp32 vector (mean and 1st percentile);
- top-10 overlap: for SciFact train claims and RealTimeQA dev questions, the share of the fp32
  top 10 (by cosine over the first documents of their corpus) that the variant also ranks top 10;
- time to embed the documents, one thread, batches of 32, against all-int8 in the same run.

    python -m eval.experiments.mixed_precision --scifact ../shared/data/scifact \\
        --realtimeqa ../shared/data/realtimeqa --work /tmp/mixed --out eval/results/mixed-precision.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from eval.datasets import load_beir
from indexer.onnx_embedder import OnnxEmbedder, export_fused, quantize_int8
from indexer.tokens import model_dir


def ffn_out(layer: int) -> str:
    """The feed-forward block's down projection (1536 -> 384) of one encoder layer."""
    return f"/model/encoder/layer.{layer}/output/dense/MatMul"


def variants(names: list[str]) -> dict[str, list[str]]:
    """Variant name -> the graph nodes it leaves in fp32."""

    def in_layer(name: str, layer: int) -> bool:
        return f"layer.{layer}/" in name or name == f"Attention_{layer}"

    return {
        "all int8 (shipped)": [],
        "attention output projections fp32": [n for n in names if "attention/output/dense" in n],
        "attention qkv fp32": [n for n in names if n.startswith("Attention_")],
        "feed-forward up projections fp32": [n for n in names if "intermediate/dense" in n],
        "feed-forward down projections fp32": [ffn_out(layer) for layer in range(6)],
        "feed-forward down, layer 0 fp32": [ffn_out(0)],
        "feed-forward down, layers 0-1 fp32": [ffn_out(0), ffn_out(1)],
        "feed-forward down, layers 0-2 fp32": [ffn_out(layer) for layer in range(3)],
        "feed-forward down, layer 5 fp32": [ffn_out(5)],
        "layer 0 fp32": [n for n in names if in_layer(n, 0)],
        "layer 5 fp32": [n for n in names if in_layer(n, 5)],
        "all fp32": names,
    }


def top10_overlap(queries: np.ndarray, docs: np.ndarray, ref_queries: np.ndarray, ref_docs: np.ndarray) -> float:
    got = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    want = np.argsort(-(ref_queries @ ref_docs.T), axis=1)[:, :10]
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want, strict=True)]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact", type=Path, required=True)
    parser.add_argument("--realtimeqa", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="where the ONNX variants are written")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=800, help="documents per corpus")
    parser.add_argument("--queries", type=int, default=300, help="tuning queries per set")
    args = parser.parse_args(argv)

    import onnx

    sets = {"scifact": load_beir(args.scifact, "train"), "realtimeqa": load_beir(args.realtimeqa, "dev")}
    docs = {k: [f"{d.title}\n{d.text}".strip() for d in s.documents[: args.docs]] for k, s in sets.items()}
    queries = {k: list(s.queries.values())[: args.queries] for k, s in sets.items()}
    args.work.mkdir(parents=True, exist_ok=True)
    _, fused = export_fused(Path(model_dir()), args.work, "tuned")
    names = [n.name for n in onnx.load(str(fused)).graph.node if n.op_type in ("MatMul", "Attention")]
    reference = OnnxEmbedder(threads=1, workers=1, model_path=fused)  # the shipped batching, one thread
    ref = {k: (reference.embed(docs[k]), reference.embed(queries[k])) for k in sets}
    results: dict[str, dict[str, float]] = {}
    for number, (name, keep) in enumerate(variants(names).items()):
        path = fused if keep == names else args.work / f"variant-{number}.onnx"
        if keep != names:
            quantize_int8(fused, path, keep)
        embedder = OnnxEmbedder(threads=1, workers=1, model_path=path)
        embedder.embed(docs["scifact"][:64])  # warm-up
        start = time.perf_counter()
        got = {k: embedder.embed(docs[k]) for k in sets}
        seconds = time.perf_counter() - start
        cosines, overlaps = [], []
        for k in sets:
            q = embedder.embed(queries[k])
            cosines += [(got[k] * ref[k][0]).sum(axis=1), (q * ref[k][1]).sum(axis=1)]
            overlaps.append(top10_overlap(q, got[k], ref[k][1], ref[k][0]))
        cos = np.concatenate(cosines)
        results[name] = {
            "nodes_in_fp32": len(keep),
            "mean_cosine_to_fp32": round(float(cos.mean()), 5),
            "p1_cosine_to_fp32": round(float(np.percentile(cos, 1)), 5),
            "top10_overlap_with_fp32": round(float(np.mean(overlaps)), 4),
            "embed_seconds": round(seconds, 2),
            "model_mb": round(path.stat().st_size / 1e6, 1),
        }
        results[name]["time_vs_int8"] = round(seconds / results["all int8 (shipped)"]["embed_seconds"], 3)
        print(name, results[name], flush=True)
    load = os.getloadavg()[0]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.1f}",
        "texts": f"first {args.docs} documents and {args.queries} tuning queries of each set "
        "(SciFact train, RealTimeQA dev)",
        "variants": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(results, args.out.with_suffix(".png"))


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    """Top-10 overlap with fp32 against embedding time, one point per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for number, (name, row) in enumerate(results.items(), start=1):  # numbered: neighbours' names would overlap
        ax.scatter(row["time_vs_int8"], row["top10_overlap_with_fp32"], label=f"{number}  {name}")
        ax.annotate(str(number), (row["time_vs_int8"], row["top10_overlap_with_fp32"]), fontsize=8,
                    xytext=(4, 3), textcoords="offset points")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_xlabel("embedding time, relative to all int8 (same run)")
    ax.set_ylabel("top-10 overlap with fp32 (tuning queries)")
    ax.set_title("int8 MiniLM with some layers left in fp32")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
