"""Chart and markdown tables from the speed measurements' JSON (eval/results/speed-*.json).

    python -m eval.speed_report eval/results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(folder: Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def tables(folder: Path) -> str:
    """Markdown tables of whatever measurements exist in `folder`."""
    out: list[str] = []
    if data := _load(folder, "speed-throughput.json"):
        out += ["| embedder | chunks/s (median of rounds) | rounds | × st-fp32 (median of per-round ratios) |",
                "|---|---|---|---|"]
        ratios = data.get("speedup_vs_st_fp32", {})
        for name, rate in data["chunks_per_s"].items():
            rounds = ", ".join(map(str, rate["all"]))
            out.append(f"| {name} | {rate['median']} | {rounds} | {ratios.get(name, '1.0')} |")
        out.append("")
    if data := _load(folder, "speed-latency.json"):
        out += ["| embedder | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|"]
        out += [f"| {n} | {m['p50']} | {m['p95']} | {m['p99']} |" for n, m in data["ms"].items()]
        out.append("")
    if data := _load(folder, "speed-cosine.json"):
        out += ["| texts | n | min | 1st percentile | mean |", "|---|---|---|---|---|"]
        out += [f"| {k} | {v['n']} | {v['min']} | {v['p1']} | {v['mean']} |" for k, v in data.items()]
        out.append("")
    for path in sorted(folder.glob("speed-ndcg-*.json")):
        data = json.loads(path.read_text())
        metrics = [k for k in data["onnx-int8"] if k.startswith("ndcg")]
        out += [f"nDCG@10, {Path(data['dataset']).name} {data['split']} ({data['queries']} queries):", "",
                "| backend | chunks | build s | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
        for backend in ("sentence-transformers-fp32", "onnx-int8"):
            row = data[backend]
            out.append(f"| {backend} | {row['chunks']} | {row['build_s']} | "
                       + " | ".join(str(v) for k, v in row.items() if k.startswith("ndcg")) + " |")
        out.append("")
    if data := _load(folder, "speed-ann.json"):
        out += ["| vectors | flat p50 ms | HNSW build s | efSearch | recall@10 | HNSW p50 ms (k=10) | recall@100 | "
                "HNSW p50 ms (k=100) |", "|---|---|---|---|---|---|---|---|"]
        for row in data["sizes"]:
            by_ef: dict[int, dict] = {}
            for r in row["hnsw"]:
                by_ef.setdefault(r["efSearch"], {}).update({f"{k}_{r['k']}": v for k, v in r.items()})
            for ef, r in by_ef.items():
                out.append(f"| {row['size']:,} | {row['flat_ms']['p50']} | {row['hnsw_build_s']} | {ef} | "
                           f"{r['recall@10_10']} | {r['p50_ms_10']} | {r['recall@100_100']} | {r['p50_ms_100']} |")
        out.append("")
    if data := _load(folder, "speed-news.json"):
        out += [f"realtimeqa_news: {data['articles']:,} articles, nDCG@10 over {data['queries']:,} test_silver "
                "questions:", "",
                "| step | index | chunks | embedded | build s | nDCG@10 dense | nDCG@10 hybrid |",
                "|---|---|---|---|---|---|---|"]
        for step in data["steps"]:
            out.append(f"| {step['step']} | {step['faiss_factory']} | {step['chunks']:,} | {step['embedded']:,} | "
                       f"{step['build_s']} | {step.get('ndcg@10 dense', '')} | {step.get('ndcg@10 hybrid', '')} |")
        out.append("")
    if data := _load(folder, "speed-serving.json"):
        out += ["| server | cold start s | RSS ready MB | one client p50 / p95 / p99 ms | "
                f"{data['settings']['concurrency']} clients, searches/s | p50 / p99 ms under load | errors | "
                "RSS after load MB |", "|---|---|---|---|---|---|---|---|"]
        for label, run in data["runs"].items():
            one, load = run["one_client"]["client_ms"], run["concurrent"]
            out.append(f"| {label} | {run['cold_start_s']} | {run['rss_ready_mb'].get('VmRSS')} | {one['p50']} / "
                       f"{one['p95']} / {one['p99']} | {load['throughput_rps']} | {load['latency_ms']['p50']} / "
                       f"{load['latency_ms']['p99']} | {load['errors']} | {run['rss_after_load_mb'].get('VmRSS')} |")
        out.append("")
    return "\n".join(out)


def chart(folder: Path, target: Path) -> None:
    """One PNG: chunks/s, query latency, and flat vs HNSW latency by index size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8))
    if data := _load(folder, "speed-throughput.json"):
        names = list(data["chunks_per_s"])
        values = [data["chunks_per_s"][n]["median"] for n in names]
        axes[0].barh([n.replace(" (default: ", "\n(default: ") for n in names], values,
                     color=["#999" if n == "st-fp32" else "#2a7" for n in names])
        axes[0].invert_yaxis()
        axes[0].set_xlabel("chunks/s (2-core CPU, median of rounds)")
        axes[0].set_title("Indexing: embedding throughput")
        axes[0].tick_params(axis="y", labelsize=7)
    if data := _load(folder, "speed-latency.json"):
        names = list(data["ms"])
        axes[1].bar(range(len(names)), [data["ms"][n]["p50"] for n in names], label="p50",
                    color=["#999" if n == "st-fp32" else "#2a7" for n in names])
        axes[1].scatter(range(len(names)), [data["ms"][n]["p95"] for n in names], color="k", marker="_", s=400,
                        label="p95")
        axes[1].set_xticks(range(len(names)), [n.split(" (")[0].replace(" x ", "\nx ") for n in names], fontsize=7)
        axes[1].axhline(3, color="r", linestyle=":", label="3 ms target")
        axes[1].set_yscale("log")  # fp32 under load is two orders of magnitude above int8
        axes[1].set_ylabel("ms per query embedding (log scale)")
        axes[1].set_title("Query embedding latency")
        axes[1].legend(fontsize=8)
    if data := _load(folder, "speed-ann.json"):
        sizes = [r["size"] for r in data["sizes"]]
        axes[2].plot(sizes, [r["flat_ms"]["p50"] for r in data["sizes"]], "o-", label="Flat (exact)", color="#999")
        for ef in sorted({h["efSearch"] for r in data["sizes"] for h in r["hnsw"]}):
            axes[2].plot(sizes, [next(h["p50_ms"] for h in r["hnsw"] if h["efSearch"] == ef and h["k"] == 100)
                                 for r in data["sizes"]], "o-", label=f"HNSW32 efSearch {ef} (k=100)")
        axes[2].set_xlabel("vectors (realtimeqa_news chunks)")
        axes[2].set_ylabel("p50 ms per query")
        axes[2].set_title("Dense search: exact vs HNSW")
        axes[2].legend(fontsize=8)
    if data := _load(folder, "speed-serving.json"):
        runs = data["runs"]
        for offset, pct in enumerate(("p50", "p95", "p99")):
            axes[3].bar([i + (offset - 1) * 0.25 for i in range(len(runs))],
                        [run["one_client"]["client_ms"][pct] for run in runs.values()], width=0.25, label=pct)
        axes[3].set_xticks(range(len(runs)), [
            f"{label}\n{run['concurrent']['throughput_rps']} searches/s with {data['settings']['concurrency']} clients"
            for label, run in runs.items()], fontsize=7)
        axes[3].set_ylabel("ms per /search, one client")
        axes[3].set_title(f"HTTP /search on {next(iter(runs.values()))['index']['chunks']:,} news chunks")
        axes[3].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["eval/results"])[0])
    chart(folder, folder / "speed.png")
    print(tables(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
