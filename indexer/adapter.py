"""newsdesk's retrieval adapter: low-rank updates to all-MiniLM-L6-v2, learned from labelled questions.

The packaged model stays as it is on disk. `indexer/data/minilm-lora.npz` holds, for each
linear layer of the encoder, two small matrices A (rank x in) and B (out x rank); the tuned
model is the packaged one with B @ A added to each weight (LoRA, merged once at load, so
embedding costs exactly what the packaged model costs). The adapter was trained with
`python -m eval.experiments.finetune` on SciFact train and RealTimeQA dev (issue 7; the
method and figures are in eval/README.md).

Which model embeds is `$NEWSDESK_MODEL`: "tuned" (the default) or "base" (the packaged
model alone). The two give different vectors, so they have different model ids and an index
built with one is refused by the other (rebuild with `newsdesk index`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from indexer.errors import NewsdeskError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
ADAPTER_PATH = Path(__file__).with_name("data") / "minilm-lora.npz"
ModelName = Literal["tuned", "base"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


def model_choice(name: str | None = None) -> str:
    """`name`, else $NEWSDESK_MODEL, else "tuned"; anything else is a clear error."""
    name = (name or os.environ.get("NEWSDESK_MODEL") or "tuned").strip().lower()
    if name not in MODEL_NAMES:
        raise NewsdeskError(f"Unknown model {name!r} (NEWSDESK_MODEL); use one of: {', '.join(MODEL_NAMES)}.")
    return name


@functools.cache
def adapter_digest(path: Path = ADAPTER_PATH) -> str:
    """First 12 hex digits of the adapter file's sha256: part of the model id and of the ONNX export key."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError as exc:
        raise NewsdeskError(f"The retrieval adapter {path} cannot be read ({exc.strerror}); reinstall newsdesk, "
                            "or set NEWSDESK_MODEL=base to use the packaged model alone.") from None


def model_id(name: str) -> str:
    """The id recorded in index manifests: the packaged model's, plus the adapter's digest when tuned."""
    return MINILM_ID if name == "base" else f"{MINILM_ID}+lora-{adapter_digest()}"


def is_tuned(model: str) -> bool:
    """Whether a model id (as in a manifest) names the adapted MiniLM."""
    return "+lora-" in model


def load_updates(path: Path = ADAPTER_PATH) -> dict[str, np.ndarray]:
    """{module name: B @ A}, the weight update of each adapted linear layer (float32, out x in)."""
    unreadable = (f"The retrieval adapter {path} is unreadable ({{}}); reinstall newsdesk, "
                  "or set NEWSDESK_MODEL=base to use the packaged model alone.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with loaded as arrays:
            data = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise NewsdeskError(unreadable.format(exc)) from None
    names = sorted(key[: -len(".A")] for key in data if key.endswith(".A"))
    if not names or any(f"{name}.B" not in data for name in names):
        raise NewsdeskError(f"The retrieval adapter {path} is incomplete (A and B must come in pairs).")
    for name in names:
        a, b = data[f"{name}.A"], data[f"{name}.B"]
        if a.ndim != 2 or b.ndim != 2 or b.shape[1] != a.shape[0]:
            raise NewsdeskError(f"The retrieval adapter {path} is malformed: {name} has A {a.shape}, B {b.shape}.")
    return {name: (data[f"{name}.B"].astype(np.float32) @ data[f"{name}.A"].astype(np.float32)) for name in names}


def apply_adapter(transformer, path: Path = ADAPTER_PATH) -> None:  # type: ignore[no-untyped-def]
    """Add the adapter's updates to a loaded MiniLM (a transformers BertModel), in place."""
    import torch

    modules = dict(transformer.named_modules())
    with torch.no_grad():
        for name, update in load_updates(path).items():
            weight = getattr(modules.get(name), "weight", None)
            if weight is None or tuple(weight.shape) != update.shape:
                raise NewsdeskError(f"The retrieval adapter {path} does not fit the model (layer {name}).")
            weight += torch.from_numpy(update).to(weight.dtype)
