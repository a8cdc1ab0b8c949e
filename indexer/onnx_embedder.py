"""The packaged all-MiniLM-L6-v2 as an int8 ONNX Runtime model: same vectors (cosine >= 0.99), several times faster.

The ONNX file is made from the package's own weights on first use and cached on disk:
torch exports the model (mean pooling and L2 normalisation inside the graph),
ONNX Runtime's transformer optimizer fuses attention, layer norms and GELU, and
dynamic quantization turns the weights into int8, one scale per output channel
(one scale per tensor loses too much: cosine to fp32 falls to about 0.93).
Nothing is downloaded. The cache directory is `$NEWSDESK_CACHE_DIR`, else
`$XDG_CACHE_HOME/newsdesk`, else `~/.cache/newsdesk`; each export lives in
`onnx/<model>-int8-<key>/`, the key covering the model files, the retrieval adapter
(indexer/adapter.py: "tuned" exports the packaged weights with the adapter merged), this
recipe's version and the onnxruntime version, so a change to any of them exports afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np

from indexer.adapter import adapter_digest, apply_adapter, model_choice, model_id
from indexer.embedding import MINILM_DIMENSION, MINILM_ID
from indexer.errors import NewsdeskError
from indexer.late_interaction import normalise_rows
from indexer.publish import fsync_file
from indexer.tokens import model_dir

log = logging.getLogger(__name__)

# Bump EXPORT_VERSION when the export recipe below changes; bump VECTORS_VERSION (the backend
# name, part of the embedding cache key) only when the vectors it gives change. Version 3 added
# the token vectors as a second output; its sentence vectors are those of version 2.
EXPORT_VERSION = 3
VECTORS_VERSION = 2
MODEL_FILE = "model.int8.onnx"
INFO_FILE = "export.json"
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
# Probe texts for the post-export check against the fp32 torch model.
_PROBES = (
    "Which company did Daimler team up with for Denza?",
    "Xiaomi is in talks with Beijing Automotive about building electric cars in China, people familiar said.",
    "比亞迪",
)
MIN_PROBE_COSINE = 0.95  # catches a broken export; healthy ones measure about 0.985 and up (sentence and tokens)


def cache_dir() -> Path:
    """Where exported models are kept: $NEWSDESK_CACHE_DIR, else $XDG_CACHE_HOME/newsdesk, else ~/.cache/newsdesk."""
    if os.environ.get("NEWSDESK_CACHE_DIR"):
        return Path(os.environ["NEWSDESK_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "newsdesk"


def export_key(source: Path, model: str = "tuned") -> str:
    """Identifies one export: model files (size and mtime, cheap to read), adapter, recipe and onnxruntime versions."""
    parts = {"model": MINILM_ID, "recipe": EXPORT_VERSION, "onnxruntime": metadata.version("onnxruntime")}
    if model == "tuned":
        parts["adapter"] = adapter_digest()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        stat = (source / name).stat()
        parts[name] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def ensure_model(root: Path | None = None, model: str = "tuned") -> Path:
    """Path of the cached int8 model ("tuned" or "base"), exporting it first if needed (a few seconds, once)."""
    source = Path(model_dir())
    target = (root or cache_dir()) / "onnx" / f"all-MiniLM-L6-v2-{model}-int8-{export_key(source, model)}"
    if (target / MODEL_FILE).is_file() and (target / INFO_FILE).is_file():
        return target / MODEL_FILE
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    except OSError as exc:
        raise NewsdeskError(
            f"Cannot write the ONNX model cache at {target.parent} ({exc}). Set NEWSDESK_CACHE_DIR to a writable "
            "directory, or use the reference embedder with --embedder st."
        ) from None
    try:
        log.warning("Exporting all-MiniLM-L6-v2 to int8 ONNX once (cached in %s)", target)
        info = _export(source, work, model)
        (work / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for path in work.iterdir():
            fsync_file(path)
        try:
            os.replace(work, target)  # atomic: readers see no model or a whole one
        except OSError:
            if not (target / MODEL_FILE).is_file():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target / MODEL_FILE


def _export(source: Path, work: Path, model_name: str) -> dict[str, object]:
    """Export, fuse, quantize and check the model in `work`; returns what was done, for export.json."""
    import torch

    model, fused = export_fused(source, work, model_name)
    int8 = work / MODEL_FILE
    quantize_int8(fused, int8)
    fused.unlink()
    worst = _check(model, int8)
    return {
        "model_id": model_id(model_name),
        "source": str(source),
        "recipe": EXPORT_VERSION,
        "onnxruntime": metadata.version("onnxruntime"),
        "torch": torch.__version__,
        "quantization": "dynamic int8, per-channel asymmetric weights",
        "probe_min_cosine_vs_fp32": round(worst, 5),
    }


def quantize_int8(fused: Path, target: Path, keep_fp32: Sequence[str] = ()) -> None:
    """Dynamic int8 weights, one scale per output channel; `keep_fp32` names graph nodes left as they are."""
    import warnings

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(fused), str(target), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=list(keep_fp32),
            # Asymmetric weights (a zero point per channel): a little closer to fp32, no slower.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "WeightSymmetric": False},
        )


def export_fused(source: Path, work: Path, model_name: str):  # type: ignore[no-untyped-def]
    """The fp32 torch model and its fused fp32 ONNX graph (`work/model.fused.onnx`), before quantization."""
    import warnings

    import torch
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModel

    from indexer.embedding import set_offline

    set_offline()
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    # Eager attention exports as plain MatMul/Softmax, which the optimizer fuses into one
    # Attention op; the SDPA path exports a masking graph it does not recognise.
    model = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()
    if model_name == "tuned":
        apply_adapter(model)
    pooled = _mean_pooled(model, with_tokens=True)
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    fp32, fused = work / "model.fp32.onnx", work / "model.fused.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about shapes; _check after quantization is what counts
        torch.onnx.export(
            pooled,
            (ids, mask, torch.zeros_like(ids)),
            str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding", "tokens"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "token_type_ids": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
                "tokens": {0: "batch", 1: "tokens"},
            },
            opset_version=17,
            dynamo=False,
        )
        fusions = FusionOptions("bert")
        # Measured on 2 cores (onnxruntime 1.31): the fused SkipLayerNormalization kernel is
        # 5x slower than Add + LayerNormalization, and BiasGelu slower than Add + Gelu.
        fusions.enable_skip_layer_norm = False
        fusions.enable_bias_skip_layer_norm = False
        fusions.enable_bias_gelu = False
        optimized = optimize_model(
            str(fp32), model_type="bert", num_heads=config["num_attention_heads"],
            hidden_size=config["hidden_size"], opt_level=1, optimization_options=fusions,
        )
        optimized.save_model_to_file(str(fused))
    fp32.unlink()
    return model, fused


def _check(model: object, path: Path) -> float:
    """Compare the int8 model with fp32 torch on probe texts; refuse an export that drifted."""
    import torch

    encoded = [e.ids for e in _tokenizer().encode_batch(list(_PROBES))]
    session = _session(path, threads=1)
    got, got_tokens = _run(session, encoded), _run(session, encoded, output="tokens")
    ids, mask = (torch.from_numpy(a) for a in _pad(encoded))
    with torch.no_grad():
        want, want_tokens = _mean_pooled(model, with_tokens=True)(ids, mask, torch.zeros_like(ids))
    worst = float((got * want.numpy()).sum(axis=1).min())
    # The token vectors (late interaction) too: the mean per-token cosine of each probe.
    for row, tokens in enumerate(encoded):
        a = normalise_rows(got_tokens[row, : len(tokens)])
        b = normalise_rows(want_tokens[row, : len(tokens)].numpy())
        worst = min(worst, float((a * b).sum(axis=1).mean()))
    if worst < MIN_PROBE_COSINE:
        raise NewsdeskError(
            f"The int8 ONNX export differs from the original model (cosine {worst:.3f} < {MIN_PROBE_COSINE}); "
            "use --embedder st and report this."
        )
    return worst


def _mean_pooled(model, with_tokens: bool = False):  # type: ignore[no-untyped-def]
    """Wrap the transformer in a module that pools like the packaged sentence-transformers config.

    with_tokens: also return the last layer's token vectors (for late interaction).
    """
    import torch

    class MeanPooled(torch.nn.Module):
        """The transformer plus sentence-transformers' pooling: masked mean, then L2 normalisation."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(mean, p=2, dim=1)
            return (pooled, hidden) if with_tokens else pooled

    return MeanPooled(model).eval()


def _tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(f"{model_dir()}/tokenizer.json")
    # tokenizer.json ships truncation and padding at 128; the model reads 256 (as sentence-transformers does).
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.no_padding()
    return tokenizer


def _session(path: Path, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning workers burn a core while idle between batches and queries.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Left out at export for speed (see export_fused); keep the session from fusing them back.
    slow = ["SkipLayerNormFusion", "BiasGeluFusion"]
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=slow)


def _pad(batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(ids) for ids in batch)
    ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, tokens in enumerate(batch):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


def _run(session, batch: Sequence[Sequence[int]], output: str = "embedding") -> np.ndarray:  # type: ignore[no-untyped-def]
    return _run_outputs(session, batch, (output,))[0]


def _run_outputs(session, batch: Sequence[Sequence[int]], outputs: Sequence[str]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    ids, mask = _pad(batch)
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return [np.asarray(out, dtype=np.float32) for out in session.run(list(outputs), feed)]


class OnnxEmbedder:
    """all-MiniLM-L6-v2, int8 on ONNX Runtime; loads (and on first use exports) lazily.

    Texts are sorted by token count before batching, so a batch pads to nearly its own
    length, and `workers` batches run at once, each on `threads` intra-op threads
    (one thread per batch uses two cores better than two threads on one batch).
    """

    dimension = MINILM_DIMENSION
    backend = f"onnx-int8-v{VECTORS_VERSION}"  # a new recipe gives slightly other vectors: never mix them

    def __init__(
        self,
        batch_size: int = 32,
        threads: int = 1,
        workers: int | None = None,
        cache: Path | None = None,
        model_path: Path | None = None,
        model: str | None = None,
    ) -> None:
        self.model = model_choice(model)
        self.model_id = model_id(self.model)
        self.batch_size = batch_size
        self.threads = threads
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.cache = cache
        self.model_path = model_path  # None: the cached export of `model` (made on first use)
        self._session = None
        self._tokenizer = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Export (first time only) and load the model now rather than on the first call."""
        with self._lock:
            if self._session is None:
                self.model_path = self.model_path or ensure_model(self.cache, self.model)
                self._tokenizer = _tokenizer()
                self._session = _session(self.model_path, self.threads)
                if self.workers > 1:
                    self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-embed")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._embed(texts, with_tokens=False)[0]

    def embed_with_tokens(self, texts: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """`embed` and `embed_tokens` from one model run (an index that stores token vectors is built so)."""
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), []
        return self._embed(texts, with_tokens=True)

    def _embed(self, texts: Sequence[str], with_tokens: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        tokens = [e.ids for e in self._tokenizer.encode_batch(list(texts))]  # type: ignore[union-attr]
        order = np.argsort([len(t) for t in tokens], kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        outputs = ("embedding", "tokens") if with_tokens else ("embedding",)

        def run(rows: np.ndarray) -> list[np.ndarray]:
            return _run_outputs(self._session, [tokens[r] for r in rows], outputs)

        if self._pool is not None and len(batches) > 1:
            results = list(self._pool.map(run, batches))
        else:
            results = [run(rows) for rows in batches]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        token_vectors: list[np.ndarray] = [np.zeros((0, self.dimension), dtype=np.float32)] * len(texts)
        for rows, result in zip(batches, results, strict=True):
            out[rows] = result[0]
            if with_tokens:
                for j, row in enumerate(rows.tolist()):
                    token_vectors[row] = normalise_rows(result[1][j, 1 : len(tokens[row]) - 1])
        return out, token_vectors

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's word-piece ids, row for row with `embed_tokens` ([CLS] and [SEP] left out)."""
        self.warm_up()
        return [np.array(e.ids[1:-1], dtype=np.int64) for e in self._tokenizer.encode_batch(list(texts))]  # type: ignore[union-attr]

    def embed_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's token vectors ([CLS] and [SEP] left out), L2-normalised; one batch, this thread."""
        self.warm_up()
        if not texts:
            return []
        tokens = [e.ids for e in self._tokenizer.encode_batch(list(texts))]  # type: ignore[union-attr]
        hidden = _run(self._session, tokens, output="tokens")
        return [normalise_rows(hidden[row, 1 : len(ids) - 1]) for row, ids in enumerate(tokens)]
