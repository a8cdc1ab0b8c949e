"""Write benchmark and labelled-eval results as JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

# Published nDCG@10 on SciFact test, from ../shared/data/README.md (BEIR paper, Pyserini, MTEB).
PUBLISHED: dict[str, list[tuple[str, float]]] = {
    "scifact": [
        ("BM25 (BEIR paper)", 0.665),
        ("BM25 (Pyserini flat)", 0.679),
        ("all-MiniLM-L6-v2, dense only (MTEB)", 0.645),
        ("bge-small-en-v1.5, dense only (MTEB)", 0.713),
        ("BM25 top-100 + ms-marco-MiniLM-L-6-v2 cross-encoder (BEIR paper)", 0.688),
        ("BM25 + all-MiniLM-L6-v2, normalised convex fusion (published)", 0.734),
        ("BM25 + bge-base, RRF (Pyserini)", 0.742),
        ("BM25 + bge-base, min-max average (Pyserini)", 0.747),
    ]
}
BENCH_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
EVAL_METRICS = ("recall@1", "recall@5", "mrr@10", "ndcg@10", "answer_hit@5")


def machine_info() -> dict[str, object]:
    """The machine the numbers were measured on: CPU model and cores, GPU (if torch is loaded), Python."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    torch = sys.modules.get("torch")  # only asked when already loaded: importing it costs seconds
    if torch is not None:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    else:
        gpu = "present" if Path("/dev/nvidia0").exists() else "none"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Other processes on a shared machine slow every timing down; the load average says by how much.
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    faiss = sys.modules.get("faiss")  # its OpenMP threads matter for single-query latency on a busy machine
    return {
        "cpu": cpu,
        "cores": cores,
        "gpu": gpu,
        "faiss_omp_threads": faiss.omp_get_max_threads() if faiss is not None else None,
        "load_avg_1_5_15m": load,
        "python": platform.python_version(),
        "os": platform.system(),
    }


def machine_line(machine: dict[str, object], timed: bool = True) -> str:
    """One line naming the machine, and warning when a busy machine slowed the timings down."""
    line = f"{machine['cores']}-core CPU ({machine['cpu']}), GPU: {machine['gpu']}, Python {machine['python']}"
    load = machine.get("load_avg_1_5_15m")
    if load:
        line += f"; load average at the end {load[0]} / {load[1]} / {load[2]} (1/5/15 min)"
        if timed and load[2] > float(machine["cores"]) * 0.75:  # type: ignore[arg-type]
            line += ", a busy shared machine, so the timings are pessimistic"
    return line


def write_results(path: Path, result: dict) -> None:
    """A measuring script's results: JSON at `path` (folders made), and the same on stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def write_bench_report(report: dict, out_dir: Path) -> list[Path]:
    """results.json, report.md and chart.png for one benchmark run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "report.md", out_dir / "chart.png"]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(bench_markdown(report), encoding="utf-8")
    _bench_chart(report, paths[2])
    return paths


def bench_markdown(report: dict) -> str:
    """The benchmark as a Markdown page: quality, latency, index build, settings, published baselines."""
    settings, index = report["settings"], report["index"]
    lines = [
        f"# Benchmark: {report['dataset']} ({report['split']} split, {report['queries']} queries)",
        "",
        f"Measured {report['created_at']} on {machine_line(report['machine'])}.",
        "",
        "| mode | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | latency p50 (ms) | latency p95 (ms) | ranking p50 (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in report["results"].items():
        lines.append(
            f"| {label} | {r['ndcg@10']:.4f} | {r['recall@10']:.4f} | {r['recall@100']:.4f} | {r['mrr@10']:.4f} "
            f"| {r['latency_ms_p50']:.1f} | {r['latency_ms_p95']:.1f} | {r['rank_ms_p50']:.2f} |"
        )
    hits = {label: r for label, r in report["results"].items() if "answer_hit@5" in r}
    if hits:
        lines += ["", "Answer-hit@5 (a top-5 passage of `search(k=5)` contains a gold answer text, case-folded; "
                  f"{_first(hits, 'answer_queries')} questions with answers): "
                  + ", ".join(f"{label} {r['answer_hit@5']:.4f}" for label, r in hits.items()) + "."]
    lines += [
        "",
        f"Quality: all {report['queries']} queries, `search_articles(k={settings['depth']})`, a document scored by "
        f"its best chunk. Latency: `search(k=10)` as the API serves it (one FAISS thread), one query at a time "
        f"in-process, query embedding included and nothing cached, over the first "
        f"{_first(report['results'], 'latency_queries')} queries. Ranking: the quality pass's time per query with "
        "the query vector already computed (BM25, FAISS, fusion and best-chunk grouping only).",
        "",
        "## Index",
        "",
        f"- documents {index['docs']}, chunks {index['chunks']}"
        + (" (index reused from an earlier run; build figures are that run's)" if index["reused"] else ""),
        f"- build time {_num(index['build_s'], 's')}, {_num(index['docs_per_s'], ' docs/s')}, "
        f"{_num(index['chunks_per_s'], ' chunks/s')}",
        f"- peak RSS after the build {_num(index['peak_rss_mb'], ' MB')}; whole run {report['run_peak_rss_mb']} MB",
        "",
        "## Settings",
        "",
        f"- model `{settings['model']}` ({settings['dimension']}-d, {settings.get('embedder_backend', 'unknown')}), "
        f"FAISS `{settings['faiss']}`",
        f"- chunker {_kv(settings['chunker'])}",
        f"- BM25 {_kv(settings['lexical'])}; a document scores as its best chunk",
        *_token_vectors(settings.get("token_vectors")),
        "- runs: " + "; ".join(f"{label}: {_kv(s)}" for label, s in settings["runs"].items()),
    ]
    published = PUBLISHED.get(report["dataset"])
    if published:
        lines += ["", "## Published nDCG@10 (from ../shared/data/README.md)", "", "| method | nDCG@10 |", "|---|---|"]
        lines += [f"| {method} | {score:.3f} |" for method, score in published]
    return "\n".join(lines) + "\n"


def write_eval_report(report: dict, out_dir: Path) -> list[Path]:
    """results.json, report.md and chart.png for the labelled questions."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json", out_dir / "report.md", out_dir / "chart.png"]
    paths[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths[1].write_text(eval_markdown(report), encoding="utf-8")
    _eval_chart(report, paths[2])
    return paths


def eval_markdown(report: dict) -> str:
    """The labelled-question evaluation as Markdown: per mode, per question type, abstention."""
    results, settings, index = report["results"], report["settings"], report["index"]
    fusion = settings["fusion"]
    source = report.get("source") or {}
    over = f"`{source['corpus']}`" if source.get("corpus") else f"the index at `{source.get('index_dir', '?')}`"
    lines = [
        f"# Labelled questions ({report['questions']} questions, {report['answerable']} answerable)",
        "",
        f"Measured {report['created_at']} on {machine_line(report['machine'], timed=False)}.",
        "",
        f"Questions `{source.get('questions', '?')}`, over {over}.",
        "",
        f"Index `{index['id']}`: {index['articles']} articles, {index['chunks']} chunks; model `{settings['model']}` "
        f"({_kv(settings.get('embedder_backend', {}))}); "
        f"chunker {_kv(settings['chunker'])}; BM25 {_kv(settings['lexical'])}; "
        f"hybrid fusion {describe_fusion(fusion)}.",
        "",
        "A passage is relevant when it comes from a labelled article and its span contains the labelled answer "
        "text. Recall@k is the share of a question's labelled answers found in the top k passages; answer-hit@5 "
        "is whether any of the top 5 passages contains an answer text (from any article). Unanswerable questions "
        "are left out of these averages and used for the abstention check below.",
        "",
        "| mode | Recall@1 | Recall@5 | MRR@10 | nDCG@10 | answer-hit@5 |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in results.items():
        lines.append(f"| {mode} | " + " | ".join(f"{r[m]:.3f}" for m in EVAL_METRICS) + " |")
    modes = list(results)
    kinds = next(iter(results.values()))["by_type"]
    for metric in ("mrr@10", "recall@5"):
        lines += ["", f"## {metric} by question type", ""]
        lines += ["| type | n | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
        for kind, row in kinds.items():
            cells = " | ".join(f"{results[m]['by_type'][kind][metric]:.3f}" for m in modes)
            lines.append(f"| {kind} | {row['n']} | {cells} |")
    a = report["abstention"]
    lines += [
        "",
        "## Abstention (the /ask path, `answer_question`)",
        "",
        f"- unanswerable questions it declined: {a['unanswerable_abstained']} of {a['unanswerable']}",
        f"- answerable questions it answered: {a['answerable_answered']} of {a['answerable']}",
        f"- answer accuracy (cited sentences contain a labelled answer text): {a['answer_accuracy']}",
        f"- abstention precision {a['abstention_precision']}, recall {a['abstention_recall']}",
    ]
    if a["wrongly_answered"]:
        lines.append(f"- answered although unanswerable: {', '.join(a['wrongly_answered'])}")
    return "\n".join(lines) + "\n"


def _bench_chart(report: dict, path: Path) -> None:
    plt = _pyplot()
    labels = list(report["results"])
    wide = len(labels) > 4
    fig, (quality, latency) = plt.subplots(
        1, 2, figsize=(14 if wide else 12, 5), gridspec_kw={"width_ratios": [3, 2]}
    )
    xs = range(len(labels))
    width = 0.8 / len(BENCH_METRICS)
    for i, metric in enumerate(BENCH_METRICS):
        values = [report["results"][label][metric] for label in labels]
        bars = quality.bar([x + (i - 1.5) * width for x in xs], values, width, label=metric)
        if metric == "ndcg@10":
            quality.bar_label(bars, fmt="%.3f", fontsize=6, rotation=90, padding=2)
    for i, (_, score) in enumerate(PUBLISHED.get(report["dataset"], [])[:2]):  # the two published BM25 figures
        quality.axhline(score, color="grey", linestyle=":", linewidth=0.8, label="published BM25" if i == 0 else None)
    quality.set_xticks(list(xs), labels, rotation=30 if wide else 0, ha="right" if wide else "center", fontsize=8)
    quality.set_ylim(0, 1.1)
    quality.set_title(f"{report['dataset']} {report['split']} ({report['queries']} queries): quality")
    quality.legend(fontsize=7, ncol=5, loc="upper center")
    p50 = [report["results"][label]["latency_ms_p50"] for label in labels]
    p95 = [report["results"][label]["latency_ms_p95"] for label in labels]
    latency.bar([x - 0.2 for x in xs], p50, 0.4, label="p50")
    latency.bar([x + 0.2 for x in xs], p95, 0.4, label="p95")
    latency.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=8)
    latency.set_ylabel("ms per search(k=10), query embedding included")
    load = report["machine"].get("load_avg_1_5_15m")
    busy = f", load avg {load[2]}" if load else ""
    latency.set_title(f"latency ({report['machine']['cores']}-core CPU{busy})")
    latency.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _eval_chart(report: dict, path: Path) -> None:
    plt = _pyplot()
    modes = list(report["results"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(modes)
    for i, mode in enumerate(modes):
        values = [report["results"][mode][m] for m in EVAL_METRICS]
        ax.bar([x + i * width for x in range(len(EVAL_METRICS))], values, width, label=mode)
    ax.set_xticks([x + width * (len(modes) - 1) / 2 for x in range(len(EVAL_METRICS))], EVAL_METRICS)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Labelled questions over corpus/ ({report['answerable']} answerable)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pyplot():  # type: ignore[no-untyped-def]
    """matplotlib with the Agg backend, imported only when a chart is drawn (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _first(results: dict, key: str) -> object:
    return next(iter(results.values()))[key] if results else 0


def _num(value: float | None, unit: str) -> str:
    return "unknown" if value is None else f"{value:,.1f}{unit}"


def describe_fusion(config: dict) -> str:
    """A SearchConfig (as a dict) in words, naming only the settings its fusion reads."""
    name, depth = config["fusion"], config["depth"]
    if name == "additive":
        late_depth, late_weight = config.get("late_depth", 0), config.get("late_weight", 0)
        late = f", late interaction {late_weight:g} over the top {late_depth}" if late_depth and late_weight else ""
        return f"additive (BM25 weight {config['lexical_weight']:g}, depth {depth}{late})"
    if name == "rrf":
        return f"rrf (depth {depth})"
    return f"{name} (dense weight {config['alpha']:g}, depth {depth})"


def _token_vectors(stored: dict | None) -> list[str]:
    """The report line on an index's stored token vectors (late interaction); none when it stores none."""
    if not stored:
        return []
    return [f"- token vectors stored for late interaction: {stored['tokens']:,} tokens as {stored['format']}, "
            f"{stored['bytes'] / 1e6:.1f} MB"]


def _kv(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())
