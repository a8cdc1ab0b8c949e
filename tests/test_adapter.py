"""The retrieval adapter (indexer/adapter.py): model choice, ids, the shipped file, bad files."""

from pathlib import Path

import numpy as np
import pytest

from indexer import adapter
from indexer.adapter import MINILM_ID, load_updates, model_choice, model_id
from indexer.errors import NewsdeskError

# all-MiniLM-L6-v2: 6 layers of query, key, value, attention output (384 x 384), FFN in (1536 x 384), out (384 x 1536)
LINEAR_SHAPES = {"query": (384, 384), "key": (384, 384), "value": (384, 384), "attention.output.dense": (384, 384),
                 "intermediate.dense": (1536, 384), "output.dense": (384, 1536)}


def test_model_choice_defaults_to_tuned_and_follows_the_environment(monkeypatch):
    monkeypatch.delenv("NEWSDESK_MODEL", raising=False)
    assert model_choice() == "tuned"
    monkeypatch.setenv("NEWSDESK_MODEL", " Base ")
    assert model_choice() == "base"
    assert model_choice("tuned") == "tuned"  # an explicit choice wins over the environment
    monkeypatch.setenv("NEWSDESK_MODEL", "bge")
    with pytest.raises(NewsdeskError, match="Unknown model 'bge'.*tuned, base"):
        model_choice()


def test_tuned_and_base_models_have_different_ids():
    assert model_id("base") == MINILM_ID
    tuned = model_id("tuned")
    assert tuned.startswith(MINILM_ID + "+lora-") and len(tuned) == len(MINILM_ID) + len("+lora-") + 12


def test_the_shipped_adapter_updates_every_linear_layer_of_the_encoder():
    updates = load_updates()
    assert len(updates) == 6 * len(LINEAR_SHAPES)
    for layer in range(6):
        for suffix, shape in LINEAR_SHAPES.items():
            name = next(n for n in updates if n.startswith(f"encoder.layer.{layer}.") and n.endswith(suffix)
                        and (suffix != "output.dense" or "attention" not in n))
            update = updates[name]
            assert update.shape == shape and update.dtype == np.float32
            assert 0 < np.linalg.norm(update) < np.sqrt(update.size)  # trained, and small next to the weights


def test_an_unreadable_adapter_is_a_clear_error(tmp_path: Path):
    broken = tmp_path / "adapter.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(NewsdeskError, match="unreadable.*NEWSDESK_MODEL=base"):
        load_updates(broken)
    np.savez(broken, **{"encoder.layer.0.attention.self.query.A": np.zeros((4, 384), np.float32)})
    with pytest.raises(NewsdeskError, match="incomplete"):
        load_updates(broken)
    with pytest.raises(NewsdeskError, match="cannot be read.*NEWSDESK_MODEL=base"):
        adapter.adapter_digest(tmp_path / "missing.npz")


def test_an_adapter_for_another_model_is_refused(tmp_path: Path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "adapter.npz"
    np.savez(path, **{"encoder.layer.0.attention.self.query.A": np.ones((2, 384), np.float32),
                      "encoder.layer.0.attention.self.query.B": np.ones((384, 2), np.float32)})
    small = torch.nn.Module()
    small.query = torch.nn.Linear(8, 8)
    with pytest.raises(NewsdeskError, match="does not fit the model"):
        adapter.apply_adapter(small, path)


def test_merging_adds_b_times_a_to_the_weights(tmp_path: Path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)).astype(np.float32), rng.standard_normal((4, 2)).astype(np.float32)
    path = tmp_path / "adapter.npz"
    np.savez(path, **{"proj.A": a, "proj.B": b})
    model = torch.nn.Module()
    model.proj = torch.nn.Linear(3, 4)
    before = model.proj.weight.detach().numpy().copy()
    adapter.apply_adapter(model, path)
    np.testing.assert_allclose(model.proj.weight.detach().numpy(), before + b @ a, rtol=1e-6)


@pytest.mark.parametrize("name", ["tuned", "base"])
def test_both_embedders_name_and_export_the_chosen_model(name: str, tmp_path: Path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from indexer import onnx_embedder
    from indexer.embedding import SentenceTransformerEmbedder

    monkeypatch.setenv("NEWSDESK_MODEL", name)
    assert onnx_embedder.OnnxEmbedder().model_id == SentenceTransformerEmbedder().model_id == model_id(name)
    exported = []

    def fake_export(source: Path, work: Path, model: str) -> dict[str, object]:
        exported.append(model)
        (work / onnx_embedder.MODEL_FILE).write_bytes(b"onnx")
        return {}

    monkeypatch.setattr(onnx_embedder, "_export", fake_export)
    path = onnx_embedder.ensure_model(tmp_path, name)
    assert exported == [name] and path.parent.name.startswith(f"all-MiniLM-L6-v2-{name}-int8-")
    other = "base" if name == "tuned" else "tuned"
    assert onnx_embedder.ensure_model(tmp_path, other).parent != path.parent  # never the other model's file
    assert exported == [name, other]


def test_malformed_adapters_are_clear_errors(tmp_path: Path):
    npy = tmp_path / "adapter.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(NewsdeskError, match="unreadable.*not an .npz"):
        load_updates(npy)
    ranks = tmp_path / "ranks.npz"
    np.savez(ranks, **{"proj.A": np.zeros((4, 8), np.float32), "proj.B": np.zeros((8, 2), np.float32)})
    with pytest.raises(NewsdeskError, match=r"malformed: proj has A \(4, 8\), B \(8, 2\)"):
        load_updates(ranks)


def test_base_model_indexes_keep_their_own_corroboration_cut():
    from indexer.answer import CORROBORATION, AnswerConfig

    shipped = AnswerConfig()
    assert (shipped.corroboration, shipped.corroboration_ratio) == CORROBORATION["tuned"]
    assert shipped.for_model(model_id("tuned")) is shipped
    base = shipped.for_model(model_id("base"))
    assert (base.corroboration, base.corroboration_ratio) == CORROBORATION["base"] != CORROBORATION["tuned"]
    chosen = AnswerConfig(corroboration=0.9)
    assert chosen.for_model(model_id("base")) is chosen  # settings someone chose are left alone


def test_an_index_of_the_other_model_is_refused_with_a_hint(tmp_path: Path):
    from indexer.build import build_index
    from indexer.corpus import Article
    from indexer.embedding import FakeEmbedder
    from indexer.errors import IncompatibleIndex
    from indexer.search import SearchIndex

    tuned, base = FakeEmbedder(dimension=16), FakeEmbedder(dimension=16)
    tuned.model_id, base.model_id = model_id("tuned"), model_id("base")
    build_index([Article("a", "Title", "Some text about cars.")], tmp_path / "index", tuned, progress=False)
    with pytest.raises(IncompatibleIndex, match=r"Rebuild the index with `newsdesk index` \(NEWSDESK_MODEL chooses"):
        SearchIndex.load(tmp_path / "index", base)
