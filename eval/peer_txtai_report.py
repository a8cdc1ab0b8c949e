"""The side-by-side report of eval/peer_txtai.py: newsdesk against txtai, row by row, as Markdown.

Re-render peer-txtai.md from peer-txtai.json without measuring again:

    python -m eval.peer_txtai_report eval/results
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from eval.report import machine_line

SYSTEMS = ("newsdesk", "txtai")
ONE_THREAD = "txtai, OMP_NUM_THREADS=1"  # optional extra service: txtai with one torch thread per query

Better = Literal["lower", "higher", "score"]  # "score": higher is better, and the gap reads as a difference

# Each table row: label, how to read it from a report, and which way is better.
ROWS: list[tuple[str, Callable[[dict, str], float], Better]] = [
    ("index build, cold (s)", lambda r, s: r["build_s"][s], "lower"),
    ("nDCG@10, hybrid (default)", lambda r, s: r["ndcg@10"][s]["hybrid"], "score"),
    ("nDCG@10, dense only", lambda r, s: r["ndcg@10"][s]["dense"], "score"),
    ("nDCG@10, lexical only", lambda r, s: r["ndcg@10"][s]["lexical"], "score"),
    ("HTTP latency p50, 1 client (ms)", lambda r, s: r["latency_ms"][s]["p50"], "lower"),
    ("HTTP latency p95, 1 client (ms)", lambda r, s: r["latency_ms"][s]["p95"], "lower"),
    ("HTTP latency p99, 1 client (ms)", lambda r, s: r["latency_ms"][s]["p99"], "lower"),
    ("HTTP throughput, {clients} clients (searches/s)", lambda r, s: r["throughput"][s]["qps"], "higher"),
    ("HTTP errors under load", lambda r, s: r["throughput"][s]["errors"], "lower"),
    ("serving RSS after the load (MiB)", lambda r, s: r["rss_mb"][s], "lower"),
]


def ahead(newsdesk: float, txtai: float, better: Better) -> str:
    """Who is ahead on one row, and by how much: 'newsdesk (1.50x)', 'txtai (+0.012)' or 'tie'."""
    if newsdesk == txtai:
        return "tie"
    winner = "newsdesk" if (newsdesk < txtai) == (better == "lower") else "txtai"
    if better == "score":
        return f"{winner} (+{abs(newsdesk - txtai):.3f})"
    low, high = sorted((newsdesk, txtai))
    return f"{winner} ({high / low:.2f}x)" if low > 0 else winner


def verdicts(report: dict) -> list[tuple[str, float, float, str]]:
    """(row label, newsdesk, txtai, who is ahead) for every row."""
    out = []
    for label, read, better in ROWS:
        newsdesk, txtai = read(report, "newsdesk"), read(report, "txtai")
        out.append((label.format(clients=report["settings"]["concurrency"]), newsdesk, txtai,
                    ahead(newsdesk, txtai, better)))
    return out


def table(report: dict) -> list[str]:
    """newsdesk against txtai's defaults, row by row; an extra txtai service (if run) in a last column."""
    extra = [name for name in report["rss_mb"] if name not in SYSTEMS]
    lines = ["| row | newsdesk | txtai | ahead |" + "".join(f" {name} (not its default) |" for name in extra),
             "|---|---|---|---|" + "---|" * len(extra)]
    for (label, newsdesk, txtai, verdict), (_, read, _) in zip(verdicts(report), ROWS, strict=True):
        cells = "".join(f" {_cell(read, report, name)} |" for name in extra)
        lines.append(f"| {label} | {newsdesk:g} | {txtai:g} | {verdict} |{cells}")
    return lines


def _cell(read: Callable[[dict, str], float], report: dict, name: str) -> str:
    try:
        return f"{read(report, name):g}"
    except KeyError:  # ranked once, by txtai with its defaults: the thread count does not change the results
        return "as txtai"


def markdown(reports: dict[str, dict]) -> str:
    out = ["# Side by side with txtai", "",
           "Written by `eval/peer_txtai.py`; raw numbers in [peer-txtai.json](peer-txtai.json). Same model (the "
           "packaged all-MiniLM-L6-v2), same documents (title + text), same queries, one run per dataset, both "
           "services on loopback at once. \"ahead\" compares newsdesk with txtai as configured by default.", ""]
    for name, report in reports.items():
        settings, v = report["settings"], report["versions"]
        behind = [f"{label}: {verdict}" for label, _, _, verdict in verdicts(report) if verdict.startswith("txtai")]
        out += [f"## {name} ({report['split']}: {report['documents']:,} documents, {report['queries']:,} judged "
                f"queries){' (SUBSET, smoke test)' if report['subset'] else ''}", "", *table(report), "",
                "txtai ahead on: " + ("; ".join(behind) if behind else "no row") + ".", "",
                f"- Command (from the repository root, with its venv): `{report['command']}`",
                f"- Machine: {machine_line(report['machine'])}; at the start {report['load_avg_start']} (the JSON "
                "has it for every phase).",
                "- Build: one cold build each, newsdesk first, in the same run; each timing covers loading the "
                "model, embedding, building the indexes and saving them (newsdesk: `build_index(cache=False)`, "
                "every chunk of every document embedded, its int8 ONNX export cached on disk beforehand as a "
                "one-time step; txtai: `Embeddings(...)`, `index`, `save`, each document embedded once, cut at "
                "the model's 256 word pieces as its defaults do).",
                "- nDCG@10: every judged test query, top 10 (newsdesk `SearchIndex.search_articles(k=10)`, a "
                "document scored by its best chunk; txtai `batchsearch(limit=10)`), scored by `eval/metrics.py`.",
                f"- Latency: {settings['latency_requests']} distinct queries, one client, one keep-alive connection "
                "per service, each query sent to every service in rotating order; k=10; client-side time.",
                f"- Throughput: {settings['concurrency']} client threads for {settings['rounds']} rounds of "
                f"{settings['duration_s']:g} s per service, in forward then reverse order; per block: "
                + "; ".join(f"{s} {[b['throughput_rps'] for b in runs['blocks']]} /s"
                            for s, runs in report["throughput"].items())
                + f". Queries taken in turn from a pool of {settings['http_query_pool']:,} distinct ones (all of "
                "the set's queries), so none repeats within newsdesk's 1,024-query vector cache.",
                f"- newsdesk: {settings['newsdesk']}; {_pairs(v['newsdesk venv'])}.",
                "- txtai: `Embeddings(path=<model>, content=True, hybrid=True)`, defaults otherwise (saved config: "
                f"{json.dumps({k: settings['txtai_config'].get(k) for k in ('scoring', 'backend')})}); hybrid = "
                "its default fusion weight 0.5, dense = weight 1, lexical = weight 0; served by its own API "
                f"(`CONFIG=config.yml uvicorn txtai.api:app`, one worker); {_pairs(v['txtai venv'])}."]
        if ONE_THREAD in report["rss_mb"]:
            out += ["- Last column: txtai built and served the same way but with `OMP_NUM_THREADS=1`, not its "
                    "default (torch's default is one thread per core for every batch and query; newsdesk embeds "
                    "each query on one thread by default). It shows how much of the gap that one setting explains "
                    "on a two-core machine shared with other jobs."]
        out.append("")
    return "\n".join(out)


def _pairs(packages: dict[str, str]) -> str:
    return ", ".join(f"{name} {version}" for name, version in packages.items())




def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("eval/results")
    reports = json.loads((folder / "peer-txtai.json").read_text(encoding="utf-8"))
    (folder / "peer-txtai.md").write_text(markdown(reports), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
