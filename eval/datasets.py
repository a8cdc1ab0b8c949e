"""Load a BEIR-layout retrieval dataset: corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv.

Unlike the corpus loader (which skips what it cannot read, so indexing never stops),
a benchmark must not quietly drop judged documents or queries: every problem here is
a `DatasetError` naming the file, the line and the fix.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

from indexer.corpus import Article
from indexer.errors import NewsdeskError

Qrels = dict[str, dict[str, int]]  # query id -> {document id: graded relevance}


class DatasetError(NewsdeskError):
    """A benchmark dataset is missing a file or has a malformed or inconsistent one."""


@dataclass(frozen=True)
class BeirDataset:
    """Documents, the queries judged in one split, and their relevance labels."""

    name: str
    split: str
    documents: list[Article]
    queries: dict[str, str]  # only the queries that have judgements in this split, in qrels order
    qrels: Qrels
    # Gold answer texts per query, when the set ships an answers.jsonl (RealTimeQA): for answer-hit@5.
    answers: dict[str, list[str]] = field(default_factory=dict)


def load_beir(path: Path | str, split: str = "test") -> BeirDataset:
    """Read the dataset at `path`, keeping the queries judged in `split`."""
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"Dataset directory {root} does not exist (expected corpus.jsonl, queries.jsonl, qrels/).")
    documents = load_documents(_corpus_file(root))
    all_queries = load_queries(_required(root / "queries.jsonl", "queries.jsonl"))
    qrels = load_qrels(_qrels_file(root, split))
    _check_ids(qrels, all_queries, {d.article_id for d in documents}, root, split)
    queries = {qid: all_queries[qid] for qid in qrels}
    answers = load_answers(root / "answers.jsonl", queries) if (root / "answers.jsonl").exists() else {}
    return BeirDataset(root.name, split, documents, queries, qrels, answers)


def load_answers(path: Path, queries: dict[str, str]) -> dict[str, list[str]]:
    """The non-empty `answer_text` strings of each of `queries` (a query with none is left out)."""
    answers: dict[str, list[str]] = {}
    for where, record in _json_lines(path):
        query_id = _id_of(record, where)
        texts = record.get("answer_text")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise DatasetError(f"{where}: 'answer_text' must be a list of strings.")
        if query_id in queries and any(t.strip() for t in texts):
            answers[query_id] = [t for t in texts if t.strip()]
    return answers


def load_documents(path: Path) -> list[Article]:
    """One Article per corpus line; a document keeps its own title (possibly empty) and metadata."""
    documents: list[Article] = []
    seen: set[str] = set()
    for where, record in _json_lines(path):
        doc_id = _id_of(record, where)
        if doc_id in seen:
            raise DatasetError(f"{where}: document id {doc_id!r} appears twice; ids must be unique.")
        seen.add(doc_id)
        text = record.get("text")
        title = record.get("title") or ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise DatasetError(f"{where}: 'text' and 'title' must be strings.")
        if not text.strip() and not title.strip():
            raise DatasetError(f"{where}: document {doc_id!r} has neither text nor title.")
        # A title-only document is indexed by its title, so it can still be found.
        body = text.strip() or title.strip()
        documents.append(
            Article(
                doc_id,
                title.strip(),
                body,
                _optional_str(record.get("source")),
                _iso_day(record.get("date") or record.get("publish_date")),
                _optional_str(record.get("url")),
            )
        )
    if not documents:
        raise DatasetError(f"{path} has no documents.")
    return documents


def load_queries(path: Path) -> dict[str, str]:
    """Query id -> query text."""
    queries: dict[str, str] = {}
    for where, record in _json_lines(path):
        query_id = _id_of(record, where)
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{where}: query {query_id!r} has no 'text'.")
        if query_id in queries:
            raise DatasetError(f"{where}: query id {query_id!r} appears twice; ids must be unique.")
        queries[query_id] = text.strip()
    return queries


def load_qrels(path: Path) -> Qrels:
    """`query-id TAB corpus-id TAB score` lines (an optional header first); score is an integer."""
    qrels: Qrels = {}
    with _open_text(path) as handle:
        try:
            lines = handle.read().splitlines()
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
            raise DatasetError(f"{path} cannot be read ({exc}).") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if number == 1 and fields[0].strip().lower() in {"query-id", "query_id", "qid"}:
                continue
            where = f"{path}:{number}"
            if len(fields) != 3:
                raise DatasetError(
                    f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score), got {len(fields)}."
                )
            query_id, doc_id, raw_score = (f.strip() for f in fields)
            if not query_id or not doc_id:
                raise DatasetError(f"{where}: empty query-id or corpus-id.")
            try:
                score = int(raw_score)
            except ValueError:
                raise DatasetError(f"{where}: score {raw_score!r} is not an integer.") from None
            judged = qrels.setdefault(query_id, {})
            if judged.get(doc_id, score) != score:
                raise DatasetError(
                    f"{where}: {query_id} {doc_id} was judged {judged[doc_id]} on an earlier line; "
                    "judge each pair once."
                )
            judged[doc_id] = score
    if not qrels:
        raise DatasetError(f"{path} has no judgements.")
    return qrels


def _check_ids(qrels: Qrels, queries: dict[str, str], doc_ids: set[str], root: Path, split: str) -> None:
    """Every judged query and document must exist: a typo would silently lower every score."""
    missing_queries = [q for q in qrels if q not in queries]
    if missing_queries:
        raise DatasetError(
            f"{root}/qrels/{split}.tsv names {len(missing_queries)} query id(s) not in queries.jsonl "
            f"(e.g. {', '.join(map(repr, missing_queries[:3]))}). Fix the qrels or the queries file."
        )
    missing_docs = sorted({d for judged in qrels.values() for d in judged if d not in doc_ids})
    if missing_docs:
        raise DatasetError(
            f"{root}/qrels/{split}.tsv names {len(missing_docs)} corpus id(s) not in the corpus "
            f"(e.g. {', '.join(map(repr, missing_docs[:3]))}). Fix the qrels or the corpus file."
        )
    unjudged = [q for q, judged in qrels.items() if not any(score > 0 for score in judged.values())]
    if len(unjudged) == len(qrels):
        raise DatasetError(f"{root}/qrels/{split}.tsv has no positive judgements (every score is 0).")


def _corpus_file(root: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (root / name).is_file():
            return root / name
    raise DatasetError(f"{root} has no corpus.jsonl or corpus.jsonl.gz.")


def _required(path: Path, name: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"{path.parent} has no {name}.")
    return path


def _qrels_file(root: Path, split: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", split):
        raise DatasetError(f"Split {split!r} is not a split name (letters, digits, '_', '-', '.'), e.g. test or dev.")
    path = root / "qrels" / f"{split}.tsv"
    if path.is_file():
        return path
    qrels_dir = root / "qrels"
    available = sorted(p.stem for p in qrels_dir.glob("*.tsv") if p.is_file()) if qrels_dir.is_dir() else []
    hint = f"available splits: {', '.join(available)}" if available else "the dataset has no qrels/ directory"
    raise DatasetError(f"No relevance labels for split {split!r}: {path} does not exist ({hint}).")


def _open_text(path: Path) -> IO[str]:
    try:  # utf-8-sig: a byte-order mark some editors write is not part of the first field
        if path.name.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8-sig")
        return open(path, encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{path} cannot be read ({exc.strerror or exc}).") from None


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, object]]]:
    """(file:line, object) for each non-empty line."""
    with _open_text(path) as handle:
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno}).") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{where}: expected a JSON object.")
                yield where, record
        except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as exc:
            raise DatasetError(f"{path} cannot be read ({exc}).") from None


def _id_of(record: dict[str, object], where: str) -> str:
    raw = record.get("_id", record.get("id"))
    if raw is None or str(raw).strip() == "":
        raise DatasetError(f"{where}: no '_id' field.")
    return str(raw).strip()


def _optional_str(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _iso_day(value: object) -> str | None:
    """YYYY-MM-DD from '2020-01-03', '2020/01/03' or an ISO datetime; None otherwise."""
    if not isinstance(value, str) or len(value.strip()) < 10:
        return None
    try:
        return date.fromisoformat(value.strip()[:10].replace("/", "-")).isoformat()
    except ValueError:
        return None
