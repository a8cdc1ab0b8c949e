"""Laboratory: adapt all-MiniLM-L6-v2 to the training splits with a small LoRA adapter.

Issue 7 allows learning from SciFact train and RealTimeQA dev. This trains low-rank
adapters (LoRA) on every linear layer of the encoder with an in-batch-negatives contrastive
loss (MultipleNegativesRanking: query -> its relevant chunk, against the other chunks of the
batch and one hard negative per query mined from the shipped hybrid's ranking).

Protocol (nothing here reads a test split unless `--report-test` is given):

- "val" scheme: train on SciFact train minus a fixed 20% of its queries and on RealTimeQA dev
  2020 to June 2022; choose hyperparameters on the held-out SciFact train queries and
  RealTimeQA dev July-December 2022 (a time split, like dev -> test).
- "full" scheme: train on all of SciFact train and RealTimeQA dev with the chosen settings.

    python -m eval.experiments.finetune train OUT [--scheme val|full] [--rank 16] [--epochs 1] ...
    python -m eval.experiments.finetune evaluate OUT [--scheme val|full] [--report-test]
    python -m eval.experiments.finetune soup OUT ADAPTER_DIR ADAPTER_DIR...

Vectors of the adapted model are cached in OUT per dataset (re-embedding is the slow step).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from eval.experiments import fusion as F
from eval.experiments.lab import Lab, Split
from indexer.adapter import adapter_digest
from indexer.analysis import analyze

SETS = {"scifact": ("train", "test"), "realtimeqa": ("dev", "test")}
CACHE = "c160o32t"


def held_out(dataset: str, split: Split) -> np.ndarray:
    """Boolean mask over the split's queries: the validation part of the "val" scheme."""
    if dataset == "realtimeqa":
        return np.array([q >= "20220701" for q in split.query_ids])
    rng = np.random.default_rng(7)
    mask = np.zeros(len(split.query_ids), dtype=bool)
    mask[rng.permutation(len(mask))[: len(mask) // 5]] = True
    return mask


def subset(split: Split, mask: np.ndarray, name: str) -> Split:
    ids = [q for q, m in zip(split.query_ids, mask, strict=True) if m]
    texts = [t for t, m in zip(split.texts, mask, strict=True) if m]
    return Split(name, ids, texts, {q: split.qrels[q] for q in ids}, split.rows[mask])


def chunk_text(lab: Lab, c: int) -> str:
    title = lab.documents[lab.chunk_doc[c]].title
    return f"{title}\n{lab.chunk_texts[c]}" if title else lab.chunk_texts[c]


def hybrid_rankings(lab: Lab, split: Split, dense: np.ndarray, weight: float = 1.0):
    """Additive hybrid and dense-only rankings from the split's cosines (queries x chunks)."""
    lex = lab.lexicon.scores([analyze(t) for t in split.texts])
    ceiling = lab.lexicon.ceiling([analyze(t) for t in split.texts])
    return F.additive(lab, dense, lex, ceiling, weight), F.single(lab, dense)


def mine_examples(lab: Lab, split: Split) -> list[tuple[str, str, list[str]]]:
    """(query, positive chunk text, hard negative chunk texts) per relevant document.

    Positive: the relevant document's chunk closest to the query (base model). Negatives: for
    each document ranked 3-30 by the shipped hybrid that is not labelled relevant (31-60 if
    none is), its chunk closest to the query. Training draws one of them per example: once,
    or afresh every epoch with `--resample-negatives`.
    """
    dense = lab.query_vectors[split.rows] @ lab.vectors.T
    rankings, _ = hybrid_rankings(lab, split, dense)
    first = lab.doc_first
    last = np.append(first[1:], len(lab.chunk_doc))
    position = {d: i for i, d in enumerate(lab.doc_ids)}

    def best_chunk(i: int, p: int) -> int:
        return first[p] + int(np.argmax(dense[i, first[p] : last[p]]))

    out = []
    for i, q in enumerate(split.query_ids):
        relevant = {d for d, g in split.qrels[q].items() if g > 0}
        ranked = [d for d in rankings[i][2:30] if d not in relevant]
        ranked = ranked or [d for d in rankings[i][30:60] if d not in relevant]
        negatives = [chunk_text(lab, best_chunk(i, position[d])) for d in ranked]
        for d in sorted(relevant):
            out.append((split.texts[i], chunk_text(lab, best_chunk(i, position[d])), negatives))
    return out


# ---- LoRA --------------------------------------------------------------------------------

def add_lora(model, rank: int, alpha: float):  # type: ignore[no-untyped-def]
    """Wrap every nn.Linear of the encoder with a trainable low-rank update; returns the wrappers."""
    import torch
    from torch import nn

    class LoRALinear(nn.Module):
        def __init__(self, base: nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.scale = alpha / rank
            self.A = nn.Parameter(torch.empty(rank, base.in_features))
            self.B = nn.Parameter(torch.zeros(base.out_features, rank))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale

    for p in model.parameters():
        p.requires_grad_(False)
    encoder = model[0].auto_model.encoder
    wrappers = {}
    for name, module in list(encoder.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                wrapper = LoRALinear(child)
                setattr(module, child_name, wrapper)
                wrappers[f"encoder.{name}.{child_name}"] = wrapper
    return wrappers


def save_adapter(wrappers: dict, path: Path, meta: dict) -> None:
    arrays = {}
    for name, w in wrappers.items():
        arrays[f"{name}.A"] = w.A.detach().numpy().astype(np.float32)
        arrays[f"{name}.B"] = (w.B.detach().numpy() * w.scale).astype(np.float32)  # scale folded into B
    np.savez(path, **arrays)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def soup(args: argparse.Namespace) -> None:
    """Average adapters' weight updates exactly: ranks stacked, each B divided by the number of adapters."""
    loaded = [np.load(path / "adapter.npz") for path in args.adapters]
    names = sorted(key[: -len(".A")] for key in loaded[0].files if key.endswith(".A"))
    if any(sorted(z.files) != sorted(loaded[0].files) for z in loaded):
        raise SystemExit("soup: the adapters adapt different layers; only adapters of one recipe can be averaged.")
    arrays = {}
    for name in names:
        arrays[f"{name}.A"] = np.concatenate([z[f"{name}.A"] for z in loaded], axis=0)
        arrays[f"{name}.B"] = np.concatenate([z[f"{name}.B"] for z in loaded], axis=1) / len(loaded)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"soup_of": [str(path) for path in args.adapters]}
    for path in args.adapters:
        meta[str(path)] = json.loads((path / "adapter.json").read_text())
    np.savez(args.out / "adapter.npz", **arrays)
    (args.out / "adapter.json").write_text(json.dumps(meta, indent=2) + "\n")


def merged_model(adapter: Path | None):  # type: ignore[no-untyped-def]
    """The packaged model with the adapter's low-rank updates added to its weights."""
    from sentence_transformers import SentenceTransformer

    from indexer.adapter import apply_adapter
    from indexer.tokens import model_dir

    model = SentenceTransformer(model_dir(), device="cpu")
    if adapter is not None:
        apply_adapter(model[0].auto_model, adapter)
    return model


def train(args: argparse.Namespace) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(args.seed)
    examples = []
    for dataset in args.train_on:
        tune = SETS[dataset][0]
        lab = load_lab(dataset)
        split = lab.split(tune)
        if args.scheme == "val":
            split = subset(split, ~held_out(dataset, split), f"{tune}-fit")
        mined = mine_examples(lab, split) * args.repeat.get(dataset, 1)
        if not args.resample_negatives:
            mined = [(q, pos, [negatives[rng.integers(len(negatives))]]) for q, pos, negatives in mined]
        print(f"{dataset}: {len(mined)} training pairs from {len(split.query_ids)} queries", file=sys.stderr)
        examples += mined
    model = merged_model(None)
    model.max_seq_length = 256
    wrappers = add_lora(model, args.rank, args.alpha)
    params = [p for w in wrappers.values() for p in (w.A, w.B)]
    optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    steps = args.epochs * math.ceil(len(examples) / args.batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, (steps - s) / steps)
    )
    model.train()
    started, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        order = rng.permutation(len(examples))
        for first in range(0, len(order), args.batch):
            batch = [examples[i] for i in order[first : first + args.batch]]
            if len(batch) < 2:
                continue
            if args.resample_negatives:
                negatives = [b[2][rng.integers(len(b[2]))] for b in batch]
            else:
                negatives = [b[2][0] for b in batch]
            q = encode(model, [b[0] for b in batch])
            d = encode(model, [b[1] for b in batch] + negatives)
            logits = args.scale * q @ d.T
            labels = torch.arange(len(batch))
            loss = torch.nn.functional.cross_entropy(logits, labels)
            if args.symmetric:  # also each positive chunk -> its query, against the batch's queries
                loss = (loss + torch.nn.functional.cross_entropy(logits[:, : len(batch)].T, labels)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            if step % 10 == 0 or step == steps:
                print(f"epoch {epoch + 1} step {step}/{steps} loss {loss.item():.4f} "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    meta.update(pairs=len(examples), steps=step, seconds=round(time.perf_counter() - started, 1))
    save_adapter(wrappers, args.out / "adapter.npz", meta)


def encode(model, texts: list[str]):  # type: ignore[no-untyped-def]
    features = model.tokenize(texts)
    return model(features)["sentence_embedding"]


# ---- evaluation ----------------------------------------------------------------------------

_LABS: dict[tuple[str, str], Lab] = {}


def load_lab(dataset: str, chunking: str = CACHE) -> Lab:
    if (dataset, chunking) not in _LABS:
        lab = Lab(dataset, chunking)
        lab.lexicon = lab.chunk_lexicon()
        _LABS[dataset, chunking] = lab
    return _LABS[dataset, chunking]


def vectors_file(out: Path, dataset: str, kind: str = "vectors") -> Path:
    """Where the adapter in OUT caches its vectors of a dataset; a retrained OUT gets a new name."""
    return out / f"{dataset}-{kind}-{adapter_digest(out / 'adapter.npz')}.npz"


def tuned_vectors(lab: Lab, out: Path, model) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Chunk and query vectors of the adapted model (cached in OUT)."""
    path = vectors_file(out, lab.dataset if lab.cache == CACHE else f"{lab.dataset}-{lab.cache}")
    if not path.exists():
        texts = [chunk_text(lab, c) for c in range(len(lab.chunk_doc))]
        cv = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=True)
        qv = model.encode([lab.queries[q] for q in lab.query_ids], batch_size=128, normalize_embeddings=True)
        np.savez(path, chunks=cv.astype(np.float32), queries=qv.astype(np.float32))
    data = np.load(path)
    return data["chunks"], data["queries"]


def evaluate(args: argparse.Namespace) -> None:
    model = merged_model(args.out / "adapter.npz")
    rows = []
    for dataset in args.sets:
        tune, test = SETS[dataset]
        lab = load_lab(dataset, args.chunking)
        cv, qv_all = tuned_vectors(lab, args.out, model)
        splits = []
        whole = lab.split(tune)
        if args.scheme == "val":
            splits.append(subset(whole, held_out(dataset, whole), f"{tune}-val"))
        else:
            splits.append(whole)
        if args.report_test:
            splits.append(lab.split(test))
        for split in splits:
            base_cos = lab.query_vectors[split.rows] @ lab.vectors.T
            tuned_cos = qv_all[split.rows] @ cv.T
            base_h, base_d = hybrid_rankings(lab, split, base_cos)
            row = {"set": f"{dataset} {split.name}", "queries": len(split.query_ids),
                   "base dense": lab.evaluate(split, base_d)["ndcg@10"],
                   "base hybrid": lab.evaluate(split, base_h)["ndcg@10"]}
            for weight in args.weights:
                tuned_h, tuned_d = hybrid_rankings(lab, split, tuned_cos, weight)
                row["tuned dense"] = lab.evaluate(split, tuned_d)["ndcg@10"]
                row[f"tuned hybrid {weight}"] = lab.evaluate(split, tuned_h)["ndcg@10"]
            for share in args.base_shares:  # an ensemble: base and adapted cosines averaged
                mixed_h, _ = hybrid_rankings(lab, split, share * base_cos + (1 - share) * tuned_cos)
                row[f"hybrid, base share {share}"] = lab.evaluate(split, mixed_h)["ndcg@10"]
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    chunking = "" if args.chunking == CACHE else f"-{args.chunking}"
    name = f"eval-{args.scheme}{chunking}{'-test' if args.report_test else ''}.json"
    (args.out / name).write_text(json.dumps(rows, indent=2))


def repeat_counts(text: str) -> dict[str, int]:
    """`scifact=2,realtimeqa=1` -> {"scifact": 2, "realtimeqa": 1}."""
    counts = {}
    for part in text.split(","):
        name, _, n = part.partition("=")
        if name not in SETS or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(
                f"expected DATASET=N with DATASET in {sorted(SETS)} and N >= 1, got {part!r}"
            )
        counts[name] = int(n)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    t = sub.add_parser("train")
    t.add_argument("out", type=Path)
    t.add_argument("--scheme", choices=("val", "full"), default="val")
    t.add_argument("--rank", type=int, default=16)
    t.add_argument("--alpha", type=float, default=32.0)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--scale", type=float, default=20.0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resample-negatives", action="store_true",
                   help="draw each example's hard negative afresh every epoch (default: once, when mined)")
    t.add_argument("--symmetric", action="store_true",
                   help="add the chunk -> query direction to the contrastive loss")
    t.add_argument("--train-on", nargs="+", choices=tuple(SETS), default=list(SETS),
                   help="datasets whose tuning split trains the adapter (one alone: the cross-domain check)")
    t.add_argument("--repeat", type=repeat_counts, default={}, metavar="DATASET=N[,DATASET=N]",
                   help="show each training pair of DATASET N times an epoch (each copy draws its own negative)")
    t.set_defaults(func=train)
    e = sub.add_parser("evaluate")
    e.add_argument("out", type=Path)
    e.add_argument("--scheme", choices=("val", "full"), default="val")
    e.add_argument("--weights", type=float, nargs="+", default=[1.0])
    e.add_argument("--report-test", action="store_true")
    e.add_argument("--chunking", default=CACHE, help=f"experiment cache of another chunking (default {CACHE})")
    e.add_argument("--base-shares", type=float, nargs="*", default=[],
                   help="also rank by share x base cosine + (1 - share) x adapted cosine (an ensemble)")
    e.add_argument("--sets", nargs="+", choices=tuple(SETS), default=list(SETS))
    e.set_defaults(func=evaluate)
    m = sub.add_parser("soup", help="average trained adapters (their weight updates) into OUT/adapter.npz")
    m.add_argument("out", type=Path)
    m.add_argument("adapters", type=Path, nargs="+", help="folders holding adapter.npz")
    m.set_defaults(func=soup)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
