"""The Q&A evaluation results as Markdown (eval/results/qa/report.md)."""

from __future__ import annotations

import json


def render_markdown(results: dict[str, object]) -> str:
    """The results as the Markdown report (also the table kept in eval/README.md)."""
    lines = ["# Q&A evaluation", ""]
    lab = results["labelled"]
    never = results["labelled_never_abstaining"]
    lines += [
        "## Hand-labelled questions (eval/questions.jsonl over corpus/)",
        "",
        "| measure | shipped threshold | never abstaining |",
        "|---|---|---|",
        f"| answer accuracy ({lab['answerable']} answerable) | {_pct(lab['answer_accuracy'])} | "
        f"{_pct(never['answer_accuracy'])} |",
        f"| accuracy when answered | {_pct(lab['accuracy_when_answered'])} | {_pct(never['accuracy_when_answered'])} |",
        f"| abstention precision | {_pct(lab['abstention_precision'])} | - |",
        f"| abstention recall ({lab['unanswerable']} unanswerable) | {_pct(lab['abstention_recall'])} | - |",
        f"| multi-article questions citing every labelled article | {_pct(lab['multi_article_all_cited'])} | "
        f"{_pct(never['multi_article_all_cited'])} |",
        f"| mean answer sentences | {lab['mean_sentences']} | {never['mean_sentences']} |",
        "",
        "By type (answerable: answer cited; unanswerable: abstained): "
        + ", ".join(f"{t} {_pct(v)}" for t, v in lab["by_type"].items()),
        "",
    ]
    choice = results["threshold_choice"]
    lines += [
        f"Threshold {choice['value']} (balanced accuracy {_pct(choice['balanced_accuracy'])} on the labelled set, "
        f"score gap {choice['margin']}); recalibrating now gives the shipped settings: "
        f"{'yes' if results['recalibrated_equals_shipped'] else 'NO, see results.json'}.",
        "",
    ]
    if "realtimeqa_dev" in results:
        dev, test = results["realtimeqa_dev"], results["realtimeqa_test"]
        rows = [
            ("answer sentences contain the gold answer (abstaining = miss)", "answer_in_sentences"),
            ("same, never abstaining", "answer_in_sentences_never_abstaining"),
            ("first answer sentence contains it, never abstaining", "answer_in_first_sentence_never_abstaining"),
            ("abstained", "abstained"),
            ("of those, answer sentences would have contained it", "abstained_but_right_if_answered"),
            ("ceiling: gold answer text in a retrieved passage", "answer_in_retrieved_passages"),
            ("ceiling: gold answer text in the quiz's evidence paragraph", "answer_in_evidence_paragraph"),
            ("evidence paragraph among the scored passages", "evidence_paragraph_retrieved"),
        ]
        lines += [
            "## realtimeqa (5,008 evidence paragraphs; weights tuned on dev only)",
            "",
            f"| measure | dev ({dev['questions']}) | test ({test['questions']}) |",
            "|---|---|---|",
            *[f"| {name} | {_pct(dev[key])} | {_pct(test[key])} |" for name, key in rows],
            f"| mean answer sentences | {dev['mean_sentences']} | {test['mean_sentences']} |",
            "",
        ]
        if "realtimeqa_evidence_removed" in results:
            removed = results["realtimeqa_evidence_removed"]
            lines += [
                "Evidence removed (each split asked of an index without its own era's paragraphs, a proxy for "
                f"unanswerable questions): abstained on {_pct(removed['dev']['abstained'])} of dev and "
                f"{_pct(removed['test']['abstained'])} of test questions.",
                "",
            ]
        conf = results["realtimeqa_dev_confidence"]
        lines += [
            f"Confidence vs 'answer sentences contain the gold answer' on dev: ECE {conf['ece']}; "
            + "; ".join(
                f"{b['bin']}: n={b['n']}, conf {b['mean_confidence']}, correct {b['share_correct']}"
                for b in conf["bins"]
            ),
            "",
        ]
    machine = results.get("machine", {})
    lines += [
        "## In-process answer latency (model warm, sentence cache cold)",
        "",
        f"{machine.get('cpus', '?')} CPUs, torch threads {machine.get('torch_threads', '?')}, "
        f"load average at the end of the run {machine.get('load_average_1m', '?')} "
        "(the machine is shared: other jobs inflate these numbers).",
        "",
        "| corpus | questions | median | p95 |",
        "|---|---|---|---|",
    ]
    for name, key in (
        ("corpus/ (3 articles)", "latency_seed_corpus"),
        ("realtimeqa (5,008 paragraphs)", "latency_realtimeqa"),
    ):
        if key in results:
            lat = results[key]
            lines.append(f"| {name} | {lat['questions']} | {lat['median_ms']} ms | {lat['p95_ms']} ms |")
    config = results["shipped_config"]
    lines += ["", f"Settings: {json.dumps(config)}", ""]
    return "\n".join(lines)


def _pct(value: object) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"  # type: ignore[arg-type]
