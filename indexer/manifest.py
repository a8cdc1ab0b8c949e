"""The index manifest: what built an index, so a mismatched one is refused at load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from indexer.adapter import is_tuned
from indexer.errors import CorruptIndex, IncompatibleIndex

# 2: IVF indexes (their lists in IVF_DATA_NAME) and the `vector_index` figures. A version-1
# index has neither and still loads.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
STORE_NAME = "chunks.sqlite"
VECTORS_NAME = "vectors.faiss"
IVF_DATA_NAME = "vectors.ivfdata"  # an IVF index's inverted lists, mapped from beside VECTORS_NAME
LEXICAL_DIR = "lexical"


@dataclass
class Manifest:
    """Recorded with every index build; `check_compatible` guards loading."""

    index_id: str
    model_id: str
    dimension: int
    chunker: dict[str, object]
    lexical: dict[str, object]
    faiss_factory: str
    counts: dict[str, int]
    corpus_fingerprint: str
    created_at: str
    format_version: int = FORMAT_VERSION
    extra: dict[str, object] = field(default_factory=dict)
    # How the vectors were computed ("onnx-int8", "sentence-transformers-fp32"; "unknown" in older
    # indexes). Informational: any backend of the same model_id may query the index.
    embedder_backend: str = "unknown"
    # The dense index's parameters and size: bytes per chunk on disk (mapped, not copied, when
    # served) and the vectors the writer held at once; see indexer/vector_index.py. Empty in version 1.
    vector_index: dict[str, object] = field(default_factory=dict)
    # Token vectors stored for late interaction (`newsdesk index --late-interaction`): their format,
    # count and bytes (indexer/late_interaction.py). Empty when the index stores none.
    late_interaction: dict[str, object] = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        path = directory / MANIFEST_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        path = directory / MANIFEST_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CorruptIndex(f"{path} is missing; rebuild the index with `newsdesk index`.") from None
        except (OSError, ValueError) as exc:
            raise CorruptIndex(f"{path} cannot be read ({exc}); rebuild the index with `newsdesk index`.") from None
        if not isinstance(data, dict):
            raise CorruptIndex(f"{path} is not a JSON object; rebuild the index with `newsdesk index`.")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise IncompatibleIndex(
                f"{path}: index format version {version}, this newsdesk reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}. "
                "Rebuild the index with `newsdesk index`."
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise CorruptIndex(f"{path} has unexpected fields ({exc}); rebuild the index.") from None

    def check_compatible(self, model_id: str, dimension: int) -> None:
        """Refuse an index whose vectors come from another embedding model, or whose terms from another analysis."""
        from indexer.analysis import ANALYSIS_VERSION

        analysed = int(self.lexical.get("analysis", 1))  # manifests before versions were recorded: 1
        if analysed != ANALYSIS_VERSION:
            raise IncompatibleIndex(
                f"The index's BM25 terms come from text analysis version {analysed}, and queries are now "
                f"analysed by version {ANALYSIS_VERSION}. Rebuild the index with `newsdesk index` "
                "(its embeddings are cached, so only the text is re-read)."
            )
        if self.model_id != model_id or self.dimension != dimension:
            hint = ""
            if is_tuned(self.model_id) or is_tuned(model_id):  # the tuned and base MiniLM (indexer/adapter.py)
                hint = " (NEWSDESK_MODEL chooses between the tuned and the base model)"
            raise IncompatibleIndex(
                f"The index was built with model {self.model_id} ({self.dimension}-d), but the embedder "
                f"is {model_id} ({dimension}-d). Rebuild the index with `newsdesk index`{hint}."
            )
