"""The approximate index for large builds: IVF trained on a sample, filled shard by shard, lists merged on disk.

No process holds every vector. The coarse quantizer and the codec (SQ8 ranges, PQ
codebooks) are trained on a random sample of TRAIN_PER_LIST vectors per list; then
each shard of SHARD_CHUNKS rows is added to a copy of the trained index
(`faiss.clone_index`, ids = chunk positions) and its inverted lists written to a file;
finally `OnDiskInvertedLists.merge_from_multiple` (what `faiss.contrib.ondisk.merge_ondisk`
runs) concatenates the shards' lists into IVF_DATA_NAME beside the index. Serving maps
that file, so replicas on one host share it in the page cache.

FAISS records the lists' file path inside the index file; we record the bare file name
and resolve it beside the index at load (`map_lists`), so a build directory stays valid
when it is renamed or moved.
"""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import faiss
import numpy as np

from indexer.errors import CorruptIndex
from indexer.manifest import IVF_DATA_NAME, VECTORS_NAME

# PQ: "np" skips polysemous training, which costs most of PQ's training time and serves nothing here.
IVF_PATTERN = re.compile(r"IVF(\d+),(Flat|SQ8|PQ\d+(x\d+)?(np)?)")
# Training vectors per list. FAISS warns below 39 and samples down to 256. On the news vectors
# 64 per list recalled 0.004 less of the top 10 than 94 (all of them; docs/scaling.md), and keeps
# the sample at 6.4 GB for 65,536 lists.
TRAIN_PER_LIST = 64
MIN_TRAIN = 39 * 256  # and no fewer in all: a PQ codebook's 256 centroids need 39 each before FAISS warns
# Rows added per shard: the writer holds one shard of float32 vectors (154 MB at 384-d).
SHARD_CHUNKS = 100_000
# Lists scanned per query: recall@10 0.98-0.99 on the news vectors with 128 to 1,024 lists.
IVF_NPROBE = 64
SHARDS_DIR = "ivf-shards"  # inside the build directory while it is written


def is_ivf(factory: str) -> bool:
    """Whether `factory` names an IVF index this module builds (`IVF{lists},{Flat|SQ8|PQ{m}[x{bits}][np]}`)."""
    return IVF_PATTERN.fullmatch(factory) is not None


def ivf_lists(count: int) -> int:
    """Lists for `count` vectors: a power of two near 4*sqrt(count) (FAISS's guideline), TRAIN_PER_LIST per list."""
    lists = 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
    while lists > 1 and lists * TRAIN_PER_LIST > count:
        lists //= 2
    return lists


def train_size(count: int, lists: int) -> int:
    """How many of `count` vectors train an index of `lists` lists."""
    return min(count, max(TRAIN_PER_LIST * lists, MIN_TRAIN))


def train_ivf(vectors: np.ndarray, factory: str, seed: int = 0) -> faiss.IndexIVF:
    """An empty inner-product IVF index, trained on a random sample of the rows of `vectors` (an array or memmap)."""
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    size = train_size(len(vectors), index.nlist)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size, replace=False))  # sorted: sequential reads
    index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
    index.nprobe = min(index.nlist, IVF_NPROBE)  # written with the index, read back by read_index
    return index


def write_ivf(vectors: np.ndarray, factory: str, directory: Path) -> dict[str, int]:
    """Train, add `vectors` shard by shard and write directory/VECTORS_NAME + IVF_DATA_NAME; the build's figures."""
    shard_chunks = SHARD_CHUNKS
    index = train_ivf(vectors, factory)
    shards = directory / SHARDS_DIR
    shards.mkdir()
    names = []
    for start in range(0, len(vectors), shard_chunks):
        block = np.ascontiguousarray(vectors[start : start + shard_chunks], dtype=np.float32)
        shard = faiss.clone_index(index)
        shard.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
        names.append(str(shards / f"{len(names):06d}.ivl"))  # the lists only: the quantizer is the same in all
        faiss.write_InvertedLists(shard.invlists, faiss.FileIOWriter(names[-1]))
        del shard, block
    _merge_on_disk(index, names, directory / IVF_DATA_NAME)
    shutil.rmtree(shards)
    index.make_direct_map()  # reconstruct(position): hybrid search scores candidates the dense side missed
    faiss.write_index(index, str(directory / VECTORS_NAME))
    train = train_size(len(vectors), index.nlist)
    return {
        "nlist": int(index.nlist),
        "nprobe": int(index.nprobe),
        "train_chunks": train,
        "shards": len(names),
        "shard_chunks": shard_chunks,
        # The most float32 vectors the writer held at once: the training sample or one shard.
        "build_vector_bytes": max(train, min(shard_chunks, len(vectors))) * vectors.shape[1] * 4,
    }


def _merge_on_disk(ivf: faiss.IndexIVF, names: list[str], path: Path) -> None:
    """Concatenate the shards' lists (memory-mapped, never loaded) into OnDiskInvertedLists at `path`.

    Like `merge_ondisk`, this leaves the shards' mapped lists to the end of the process:
    freeing them through SWIG (thisown) corrupts its type table (faiss 1.15.1).
    """
    pointers = faiss.InvertedListsPtrVector()
    for name in names:
        pointers.push_back(faiss.read_InvertedLists(faiss.FileIOReader(name), faiss.IO_FLAG_MMAP))
    merged = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(path))
    ivf.ntotal = merged.merge_from_multiple(pointers.data(), pointers.size(), False)
    merged.filename = path.name  # resolved beside the index file by map_lists
    ivf.replace_invlists(merged, True)
    merged.this.disown()  # the index owns the lists now, as in merge_ondisk


def map_lists(index: faiss.Index, path: Path) -> None:
    """Map the on-disk lists of `index`, read from `path` with IO_FLAG_SKIP_IVF_DATA, from the file beside `path`."""
    if not isinstance(index, faiss.IndexIVF):
        return
    lists = faiss.downcast_InvertedLists(index.invlists)
    if not isinstance(lists, faiss.OnDiskInvertedLists):
        return
    data = path.parent / Path(lists.filename).name
    if not data.is_file() or data.stat().st_size < lists.totsize:
        # Mapping a short file would crash the process on the first read past its end.
        raise CorruptIndex(f"{data} is missing or truncated; rebuild the index with `newsdesk index`.")
    lists.filename = str(data)
    lists.do_mmap()
    # Served from the page cache: FAISS's default of 32 threads started per search to prefetch
    # the probed lists cost 0.7 ms of CPU per query, twice the scan itself (docs/scaling.md).
    lists.prefetch_nthread = 0
