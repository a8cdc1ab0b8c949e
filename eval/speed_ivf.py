"""Sharded IVF against exact search on real vectors: recall, latency, bytes per chunk, and the writer's memory.

    python -m eval.speed_ivf --vectors /work/cache/news-vectors --out docs/scaling/ivf.json

--vectors is what `python -m eval.speed_vectors` wrote. --queries of those vectors, drawn
at random, are held out and searched against the rest. Each IVF index is written the way
a large build writes it (`write_vector_index`: trained on a sample, added shard by shard,
lists merged on disk) and read back the way the API reads it; HNSW is the reference.
Recall@k: the share of the exact top k found among the first k results, a result whose
exact score ties the k-th counting as found.

--synthetic N... then builds IVF and Flat over N random unit vectors in a memory-mapped file,
and loads and searches each, every step in a child process, sampling the child's private
memory (RssAnon) and mapped file pages (RssFile, reclaimable) every 20 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from eval.report import write_results
from eval.speed_ann import tie_aware_recall
from eval.speed_vectors import load_vectors
from indexer import ivf
from indexer.manifest import VECTORS_NAME
from indexer.vector_index import HNSW, build_vector_index, read_vector_index, search_vectors, write_vector_index

BUILD_SHARD_CHUNKS = ivf.SHARD_CHUNKS  # what a real build uses: the memory measurement keeps it


def _searched(index: faiss.Index, queries: np.ndarray, data: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """CPU milliseconds per query and the exact scores of the `k` results found, in found order.

    One query at a time on one thread, as the API searches; CPU time, which the other jobs
    on this machine do not inflate. Exact scores, not the index's: SQ8 and PQ scores are
    approximate and would count a wrong result as found (or a right one as missed).
    """
    started = time.process_time()
    positions = np.vstack([index.search(query[None, :], k)[1] for query in queries])
    ms = (time.process_time() - started) * 1000 / len(queries)
    scores = np.einsum("qd,qkd->qk", queries, data[np.maximum(positions, 0)])
    return ms, np.where(positions >= 0, scores, -np.inf)


def _recalls(exact: np.ndarray, found: np.ndarray) -> dict[str, float]:
    pairs = list(zip(exact, found, strict=True))
    return {f"recall@{k}": round(float(np.mean([tie_aware_recall(e, f, k) for e, f in pairs])), 4) for k in (10, 100)}


def measure(data: np.ndarray, queries: np.ndarray, exact: np.ndarray, factory: str, nprobes: list[int],
            work: Path) -> dict[str, object]:
    """Build `factory` over `data` in `work`, then recall and search cost at each nprobe."""
    work.mkdir()
    started = time.perf_counter()
    figures = write_vector_index(data, factory, work)
    row: dict[str, object] = {**figures, "build_s": round(time.perf_counter() - started, 1), "nprobe": []}
    index = read_vector_index(work / VECTORS_NAME)
    for nprobe in nprobes:
        if nprobe > index.nlist:
            continue
        index.nprobe = nprobe
        ms, found = _searched(index, queries, data, 100)
        row["nprobe"].append({"nprobe": nprobe, **_recalls(exact, found), "cpu_ms": round(ms, 3)})  # type: ignore[union-attr]
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _build_child(path: str, factory: str, work: str) -> None:
    """Index the .npy file at `path` into `work` as a build does; the manifest's figures go to figures.json."""
    ivf.SHARD_CHUNKS = BUILD_SHARD_CHUNKS
    faiss.omp_set_num_threads(1)
    figures = write_vector_index(np.load(path, mmap_mode="r"), factory, Path(work))
    (Path(work) / "figures.json").write_text(json.dumps(figures))


def _serve_child(work: str, dimension: int) -> None:
    """Load the index as the API does and answer 200 queries."""
    faiss.omp_set_num_threads(1)
    index = read_vector_index(Path(work) / VECTORS_NAME)
    for query in np.random.default_rng(1).standard_normal((200, dimension), dtype=np.float32):
        search_vectors(index, query / np.linalg.norm(query), 100)


def peak_memory(target: Callable[..., None], *args: object) -> dict[str, object]:
    """Peak RssAnon (private) and RssFile (mapped file pages, reclaimable), in MiB, of a child running `target`."""
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    started = time.perf_counter()
    child.start()
    peaks = {"RssAnon": 0, "RssFile": 0}
    while child.is_alive():
        try:
            for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                name, _, value = line.partition(":")
                if name in peaks:
                    peaks[name] = max(peaks[name], int(value.split()[0]))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.02)
    child.join()
    return {"exit": child.exitcode, "seconds": round(time.perf_counter() - started, 1),
            "peak_private_mib": round(peaks["RssAnon"] / 1024), "peak_mapped_file_mib": round(peaks["RssFile"] / 1024)}


def synthetic_memory(count: int, dimension: int, factory: str, work: Path) -> dict[str, object]:
    """Peak memory of building `factory` and Flat over `count` random unit vectors in a .npy file, and of serving."""
    work.mkdir()
    path = work / "vectors.npy"
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, dimension))
    rng = np.random.default_rng(0)
    for start in range(0, count, 100_000):
        block = rng.standard_normal((min(100_000, count - start), dimension), dtype=np.float32)
        rows[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    rows.flush()
    del rows
    result: dict[str, object] = {"vectors": count, "float32_mib": round(count * dimension * 4 / 2**20)}
    for name in (factory, "Flat"):
        directory = work / name.replace(",", "-")
        directory.mkdir()
        result[f"build {name}"] = peak_memory(_build_child, str(path), name, str(directory))
        result[f"build {name}"]["vector_index"] = json.loads((directory / "figures.json").read_text())  # type: ignore[index]
        result[f"serve {name}"] = peak_memory(_serve_child, str(directory), dimension)
    path.unlink()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=1000, help="vectors held out as queries")
    parser.add_argument("--codes", nargs="*", default=["Flat", "SQ8", "PQ96np", "PQ48np"])
    parser.add_argument("--lists", type=int, nargs="*", default=[128, 1024],
                        help="more list counts to try with SQ8 (besides the build's own choice)")
    parser.add_argument("--train-per-list", type=int, nargs="*", default=[256],
                        help="other training sample sizes to try with SQ8, per list")
    parser.add_argument("--nprobe", type=int, nargs="*", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--shard-chunks", type=int, default=10_000, help="for the recall builds (several shards)")
    parser.add_argument("--synthetic", type=int, nargs="*", default=[], help="random vector counts (memory)")
    parser.add_argument("--synthetic-factory", default="IVF1024,SQ8")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)  # as the API searches; OpenMP threads spin on a busy machine
    ivf.SHARD_CHUNKS = args.shard_chunks

    _, vectors = load_vectors(args.vectors)
    order = np.random.default_rng(5).permutation(len(vectors))
    queries, data = vectors[order[: args.queries]], np.ascontiguousarray(vectors[np.sort(order[args.queries :])])
    flat_ms, exact = _searched(build_vector_index(data, "Flat"), queries, data, 100)
    lists = ivf.ivf_lists(len(data))
    result: dict[str, object] = {
        "vectors": len(data), "queries": len(queries), "shard_chunks": args.shard_chunks,
        "train_per_list": ivf.TRAIN_PER_LIST, "faiss_threads": 1, "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "flat_cpu_ms": round(flat_ms, 3), "ivf": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        builds = [(f"IVF{lists},{code}", ivf.TRAIN_PER_LIST) for code in args.codes]
        builds += [(f"IVF{n},SQ8", ivf.TRAIN_PER_LIST) for n in args.lists if n != lists]
        builds += [(f"IVF{lists},SQ8", n) for n in args.train_per_list if n != ivf.TRAIN_PER_LIST]
        for number, (factory, ivf.TRAIN_PER_LIST) in enumerate(builds):
            row = measure(data, queries, exact, factory, args.nprobe, Path(tmp) / str(number))
            result["ivf"].append(row | {"train_per_list": ivf.TRAIN_PER_LIST})  # type: ignore[union-attr]
        started = time.perf_counter()
        hnsw = build_vector_index(data, HNSW)
        build_s = time.perf_counter() - started
        ms, found = _searched(hnsw, queries, data, 100)
        hnsw_file = Path(tmp) / "hnsw.faiss"
        faiss.write_index(hnsw, str(hnsw_file))
        result["hnsw"] = {
            "factory": HNSW, "efSearch": hnsw.hnsw.efSearch, **_recalls(exact, found), "cpu_ms": round(ms, 3),
            "build_s": round(build_s, 1), "bytes_per_chunk": round(hnsw_file.stat().st_size / len(data), 1),
        }
        result["memory"] = [synthetic_memory(n, data.shape[1], args.synthetic_factory, Path(tmp) / f"mem{n}")
                            for n in args.synthetic]
    write_results(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
