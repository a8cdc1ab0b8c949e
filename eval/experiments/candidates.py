"""Plot every adapter whose test figures were read: SciFact test against RealTimeQA test.

Reads only committed reports (int8 defaults, hybrid nDCG@10): the base model
(`eval/results/*-base-model/`), the shipped adapter (`eval/results/{scifact,realtimeqa,labelled}/`)
and the others (`eval/results/finetune/candidates-int8-test.json`: the defaults of earlier
sessions, and the candidates that were not shipped). Diamonds were searched with idf-weighted late
interaction (the default since session 11), circles without.
Each point is marked by the labelled-set gate of issue 7, judged against the base model: hybrid
answer-hit@5 and R@5 no lower, `/ask` accuracy and unanswerable questions abstained no lower.

    python -m eval.experiments.candidates --out eval/results/finetune/candidates-test.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
TARGETS = {"scifact": 0.75, "realtimeqa": 0.76}
SHIPPED = "shipped: 4 epochs, lr 2e-4, SciFact pairs twice + late interaction (session 12)"


def _report(name: str) -> dict:
    return json.loads((RESULTS / name / "results.json").read_text(encoding="utf-8"))


def _labelled(report: dict) -> dict:
    """The gate's figures, from a `newsdesk eval` report or a candidate's `labelled` entry."""
    hybrid, abstention = report["hybrid"] if "hybrid" in report else report["results"]["hybrid"], report["abstention"]
    return {
        "answer_hit@5": hybrid["answer_hit@5"],
        "recall@5": hybrid["recall@5"],
        "answer_accuracy": abstention["answer_accuracy"],
        "abstained": abstention["unanswerable_abstained"],
    }


def points() -> dict[str, dict]:
    """Name -> SciFact and RealTimeQA test nDCG@10 and the labelled-set figures."""
    rows = {
        "base model": ("scifact-base-model", "realtimeqa-base-model", "labelled-base-model", False),
        SHIPPED: ("scifact", "realtimeqa", "labelled", True),
    }
    found = {
        name: {
            "scifact": _report(scifact)["results"]["hybrid"]["ndcg@10"],
            "realtimeqa": _report(realtimeqa)["results"]["hybrid"]["ndcg@10"],
            "labelled": _labelled(_report(labelled)),
            "late_interaction": late,
        }
        for name, (scifact, realtimeqa, labelled, late) in rows.items()
    }
    candidates = json.loads((RESULTS / "finetune" / "candidates-int8-test.json").read_text(encoding="utf-8"))
    for name, row in candidates.items():
        found[name] = {
            "scifact": row["scifact test"]["hybrid"]["ndcg@10"],
            "realtimeqa": row["realtimeqa test"]["hybrid"]["ndcg@10"],
            "labelled": _labelled(row["labelled"]),
            "late_interaction": row.get("late_interaction", False),
        }
    return found


def passes_gate(labelled: dict, base: dict) -> bool:
    """No labelled-set figure below the base model's (compared at the reports' three decimals)."""
    return all(round(labelled[key], 3) >= round(base[key], 3) for key in base)


def plot(found: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = found["base model"]["labelled"]
    fig, ax = plt.subplots(figsize=(9, 7))
    ax.axvline(TARGETS["scifact"], color="grey", linestyle="--", linewidth=1)
    ax.axhline(TARGETS["realtimeqa"], color="grey", linestyle="--", linewidth=1)
    # Limits from the points and the targets, with a margin, so no point is ever clipped.
    xs = [row["scifact"] for row in found.values()] + [TARGETS["scifact"]]
    ys = [row["realtimeqa"] for row in found.values()] + [TARGETS["realtimeqa"]]
    (x0, x1), (y0, y1) = (min(xs) - 0.003, max(xs) + 0.01), (min(ys) - 0.003, max(ys) + 0.005)
    ax.fill_between([TARGETS["scifact"], x1], TARGETS["realtimeqa"], y1, color="tab:green", alpha=0.08,
                    label="both targets")
    # Numbered: the candidates sit close together and their names would overlap.
    for number, (name, row) in enumerate(found.items(), start=1):
        ok = passes_gate(row["labelled"], base)
        label = f"{number}  {name}: {row['scifact']:.4f} / {row['realtimeqa']:.4f}, gate {'pass' if ok else 'fail'}"
        marker = "X" if not ok else "D" if row["late_interaction"] else "o"  # diamond: with late interaction
        ax.scatter(row["scifact"], row["realtimeqa"], s=60, marker=marker,
                   color="tab:blue" if ok else "tab:red", label=label)
        ax.annotate(str(number), (row["scifact"], row["realtimeqa"]), fontsize=9, xytext=(5, 4),
                    textcoords="offset points")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("SciFact test nDCG@10 (hybrid, int8)")
    ax.set_ylabel("RealTimeQA test nDCG@10 (hybrid, int8)")
    ax.set_title("Every adapter read on test, against the two targets")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "finetune" / "candidates-test.png")
    args = parser.parse_args()
    found = points()
    base = found["base model"]["labelled"]
    for name, row in found.items():
        gate = "pass" if passes_gate(row["labelled"], base) else "FAIL"
        print(f"{name:55s} SciFact {row['scifact']:.4f}  RealTimeQA {row['realtimeqa']:.4f}  gate {gate}")
    plot(found, args.out)
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
