"""Measurements behind docs/scaling.md: build throughput, bytes per chunk, query latency vs size.

    python scripts/bench_scaling.py build   --corpus PATH --articles 1000 --out build.json
    python scripts/bench_scaling.py storage --corpus PATH --out storage.json
    python scripts/bench_scaling.py latency --corpus PATH --out latency.json
    python scripts/bench_scaling.py replicas --index-dir DIR --replicas 3 [--code CHECKOUT] --out replicas.json

Not a test: timings depend on the machine and its load, so each report records the
CPU count and the load average next to the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.build import LexicalConfig, chunk_articles, embed_texts, start_build, write_build  # noqa: E402
from indexer.chunking import ChunkerConfig, embedding_text  # noqa: E402
from indexer.corpus import Article, LoadReport, load_corpus  # noqa: E402
from indexer.embedding import MINILM_DIMENSION, MINILM_ID, SentenceTransformerEmbedder  # noqa: E402
from indexer.publish import build_lock, publish  # noqa: E402

QUERIES = ["election results", "central bank interest rates", "earthquake damage", "football transfer",
           "vaccine trial", "stock market falls", "climate summit agreement", "tech company layoffs"]


def ray_worker_cpu_seconds() -> float:
    """CPU seconds used so far by this machine's Ray processes: raylet, its `ray::` workers, and the
    workers that already exited (the raylet reaps them, so they count in its children's time)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if not (cmdline.startswith(b"ray::") or b"/raylet" in cmdline.split(b"\0")[0]):
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return total


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def bench_build(args: argparse.Namespace) -> dict[str, object]:
    """Chunks per second per CPU core for the local and the Ray engine, on the real model."""
    import torch

    started = time.perf_counter()
    everything, _ = load_corpus(args.corpus)
    load_seconds = time.perf_counter() - started
    articles = everything[: args.articles]
    config, lexical = ChunkerConfig(), LexicalConfig()
    out: dict[str, object] = {"machine": machine(), "articles": len(articles), "torch_version": torch.__version__,
                              "load_corpus": {"articles": len(everything), "seconds": round(load_seconds, 2)}}

    started, cpu = time.perf_counter(), time.process_time()
    chunks = chunk_articles(articles, config, progress=False)
    chunk_seconds, chunk_cpu = time.perf_counter() - started, time.process_time() - cpu
    titles = {a.article_id: a.title for a in articles}
    texts = [embedding_text(titles[c.article_id], c.text, config) for c in chunks]
    out["chunks"] = len(chunks)
    out["chunking_1_core"] = {"seconds": round(chunk_seconds, 2), "cpu_seconds": round(chunk_cpu, 2),
                              "chunks_per_cpu_s": round(len(chunks) / chunk_cpu, 1)}

    embedder = SentenceTransformerEmbedder()
    embedder.warm_up()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        sample = texts[: args.embed_sample] if threads == 1 else texts
        started, cpu = time.perf_counter(), time.process_time()
        vectors = embed_texts(embedder, sample, progress=False)[0]
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        out[f"local_embed_{threads}_threads"] = {"chunks": len(sample), "seconds": round(seconds, 2),
                                                 "cpu_seconds": round(cpu, 2),
                                                 "chunks_per_s": round(len(sample) / seconds, 1),
                                                 "chunks_per_cpu_s": round(len(sample) / cpu, 1),
                                                 "machine": machine()}
    root = Path(args.work) / "local"
    started = time.perf_counter()
    with build_lock(root):
        build = start_build(root)
        write_build(build, articles, chunks, vectors, embedder, config, lexical, LoadReport(len(articles)))
        publish(root, build)
    out["write_build"] = {"seconds": round(time.perf_counter() - started, 2)}

    from indexer.distributed import RayOptions, chunk_and_embed, ray_session

    for name, options in {
        "ray_2_actors": RayOptions(num_cpus=2, embed_actors=2, cpus_per_actor=0.875, chunk_cpus=0.25),
        "ray_1_actor": RayOptions(num_cpus=2, embed_actors=1, cpus_per_actor=1, chunk_cpus=0.25),
    }.items():
        started = time.perf_counter()
        spill = Path(args.work) / name
        spill.mkdir(parents=True, exist_ok=True)
        with ray_session(options):
            ready, workers_cpu, driver_cpu = time.perf_counter(), ray_worker_cpu_seconds(), time.process_time()
            ray_chunks, ray_vectors = chunk_and_embed(articles, SentenceTransformerEmbedder, MINILM_DIMENSION,
                                                      config, options, spill)  # no token vectors, as measured
            done = time.perf_counter()
            cpu = ray_worker_cpu_seconds() - workers_cpu + time.process_time() - driver_cpu
        same = [(c.article_id, c.ordinal, c.start, c.end) for c in ray_chunks] == [
            (c.article_id, c.ordinal, c.start, c.end) for c in chunks]
        out[name] = {
            "options": options.to_dict(), "ray_start_seconds": round(ready - started, 2),
            "pipeline_seconds": round(done - ready, 2), "chunks_per_s": round(len(ray_chunks) / (done - ready), 1),
            # workers + driver; includes each actor loading the model once
            "cpu_seconds": round(cpu, 2), "chunks_per_cpu_s": round(len(ray_chunks) / cpu, 1),
            "same_chunks_as_local": same,
            "max_abs_vector_difference": float(np.abs(ray_vectors - vectors).max()) if same else None,
            "machine": machine(),
        }
    return out


def bench_storage(args: argparse.Namespace) -> dict[str, object]:
    """Bytes per chunk of each FAISS index type (384-d), plus the store and BM25 of a real build."""
    import faiss

    rng = np.random.default_rng(0)
    n = args.vectors
    x = rng.standard_normal((n, MINILM_DIMENSION)).astype(np.float32)
    faiss.normalize_L2(x)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, object] = {}
    for factory in args.factories:
        index = faiss.index_factory(MINILM_DIMENSION, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(x[: min(n, 50_000)])
        index.add(x)
        path = work / "index.faiss"
        faiss.write_index(index, str(path))
        sizes[factory] = round(path.stat().st_size / n, 1)
    out: dict[str, object] = {"machine": machine(), "vectors": n, "faiss_bytes_per_chunk": sizes}
    if args.build:
        build = Path(args.build)
        manifest = json.loads((build / "manifest.json").read_text())
        chunks = manifest["counts"]["chunks"]
        lexical = sum(p.stat().st_size for p in (build / "lexical").rglob("*") if p.is_file())
        out["real_build"] = {
            "chunks": chunks, "articles": manifest["counts"]["articles"],
            "store_bytes_per_chunk": round((build / "chunks.sqlite").stat().st_size / chunks, 1),
            "bm25_bytes_per_chunk": round(lexical / chunks, 1),
            "flat_bytes_per_chunk": round((build / "vectors.faiss").stat().st_size / chunks, 1),
        }
    return out


class HashEmbedder:
    """Random unit vectors seeded by the text's sha256: MiniLM-shaped, for timing search without embedding."""

    model_id = MINILM_ID
    dimension = MINILM_DIMENSION

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[row] = np.random.default_rng(seed).standard_normal(self.dimension)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def bench_latency(args: argparse.Namespace) -> dict[str, object]:
    """Search latency (FAISS alone, and full hybrid SearchIndex.search) at several index sizes."""
    import faiss

    from indexer.search import SearchIndex

    faiss.omp_set_num_threads(1)  # one query per thread, as the API serves them
    everything, _ = load_corpus(args.corpus)
    out: dict[str, object] = {"machine": machine(), "faiss_threads": 1, "queries": len(QUERIES), "sizes": []}
    embedder = HashEmbedder()
    everything = everything[: max(args.sizes)]
    all_chunks = chunk_articles(everything, ChunkerConfig(), progress=False)  # in article order: prefixes slice
    positions = {a.article_id: i for i, a in enumerate(everything)}
    ends = np.searchsorted([positions[c.article_id] for c in all_chunks], np.arange(1, len(everything) + 1))
    for count in args.sizes:
        articles: list[Article] = everything[:count]
        root = Path(args.work) / f"n{count}"
        chunks = all_chunks[: int(ends[len(articles) - 1])]
        vectors = embedder.embed([c.text for c in chunks])
        with build_lock(root):
            build = start_build(root)
            write_build(build, articles, chunks, vectors, embedder, ChunkerConfig(), LexicalConfig(),
                        LoadReport(len(articles)))
            publish(root, build)
        index = SearchIndex.load(root, embedder)
        row: dict[str, object] = {"articles": len(articles), "chunks": len(chunks)}
        for mode in ("dense", "lexical", "hybrid"):
            row[f"{mode}_ms"] = _median_ms(lambda q, m=mode, i=index: i.search(q, k=10, mode=m))
        for factory in ("Flat", "HNSW32,Flat", f"IVF{_lists(len(chunks))},Flat"):
            ann = faiss.index_factory(MINILM_DIMENSION, factory, faiss.METRIC_INNER_PRODUCT)
            if not ann.is_trained:
                ann.train(vectors)
            ann.add(vectors)
            queries = embedder.embed(QUERIES * 5)
            started = time.perf_counter()
            for q in queries:
                ann.search(q.reshape(1, -1), 100)
            row[f"faiss_{factory}_ms"] = round((time.perf_counter() - started) * 1000 / len(queries), 3)
        row["machine"] = machine()
        out["sizes"].append(row)  # type: ignore[attr-defined]
        print(json.dumps(row), flush=True)
    return out


def bench_replicas(args: argparse.Namespace) -> dict[str, object]:
    """Memory of N `newsdesk serve` replicas on one index: RSS, PSS and private (anonymous) memory each."""
    import http.client
    import signal
    import socket
    import subprocess
    from urllib.parse import quote

    def port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def get(p: int, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", p, timeout=60)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    code = Path(args.code).resolve()
    env = {**os.environ, "PYTHONPATH": str(code)}
    started: list[tuple[subprocess.Popen, int]] = []
    try:
        for _ in range(args.replicas):
            p = port()
            process = subprocess.Popen(
                [sys.executable, "-m", "indexer.cli", "serve", "--index-dir", args.index_dir, "--port", str(p),
                 "--log-level", "warning"], cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append((process, p))
            deadline = time.monotonic() + 600
            while True:
                try:
                    if get(p, "/readyz") == 200:
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"replica on port {p} did not start")
                time.sleep(0.5)
            for q in QUERIES * 2:  # touch the index pages a search touches
                get(p, f"/search?q={quote(q)}&k=10")
        rows = []
        for process, p in started:
            rows.append({"port": p, **_memory(process.pid)})
    finally:
        for process, _ in started:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    index_files = sum(f.stat().st_size for f in Path(args.index_dir).rglob("*") if f.is_file())
    return {"machine": machine(), "code": str(code), "index_dir": args.index_dir,
            "index_bytes_on_disk": index_files, "replicas": rows}


def _memory(pid: int) -> dict[str, int]:
    """MiB from /proc: RSS, its anonymous (private) and file-backed parts, and PSS (shared pages split)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) // 1024
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Pss:", "Private_Clean:", "Private_Dirty:", "Shared_Clean:")):
            out[line.split(":")[0]] = int(line.split()[1]) // 1024
    return out


def _lists(n: int) -> int:
    return max(16, int(4 * np.sqrt(n)))


def _median_ms(search) -> float:  # type: ignore[no-untyped-def]
    for q in QUERIES:  # warm the query cache and the page cache: embedding is timed elsewhere
        search(q)
    times = []
    for _ in range(5):
        for q in QUERIES:
            started = time.perf_counter()
            search(q)
            times.append((time.perf_counter() - started) * 1000)
    return round(float(np.median(times)), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["build", "storage", "latency", "replicas"])
    parser.add_argument("--corpus", type=Path, default=Path("/work/shared/data/realtimeqa_news/corpus.jsonl.gz"))
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--embed-sample", type=int, default=1000, help="chunks embedded with 1 thread")
    parser.add_argument("--vectors", type=int, default=200_000)
    parser.add_argument("--factories", nargs="+",
                        default=["Flat", "HNSW32,Flat", "IVF1024,Flat", "IVF1024,SQ8", "IVF1024,PQ48", "IVF1024,PQ96"])
    parser.add_argument("--build", help="a build directory to measure store and BM25 bytes per chunk")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 26648])
    parser.add_argument("--work", default="/tmp/newsdesk-bench")
    parser.add_argument("--index-dir", help="replicas: the index to serve")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--code", default=".", help="replicas: the newsdesk checkout to run (compare two versions)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    benches = {"build": bench_build, "storage": bench_storage, "latency": bench_latency, "replicas": bench_replicas}
    result = benches[args.what](args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
