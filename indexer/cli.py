"""The `newsdesk` command: index, search, serve, ask, eval, bench."""

from __future__ import annotations

import argparse
import errno
import functools
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from indexer.errors import InvalidQuery, NewsdeskError
from indexer.publish import DEFAULT_INDEX_DIR

DEFAULT_CORPUS = Path("corpus")


def default_index_dir() -> Path:
    """$NEWSDESK_INDEX_DIR, else .newsdesk/index under the current directory (an empty variable counts as unset)."""
    value = os.environ.get("NEWSDESK_INDEX_DIR", "")
    return Path(value) if value.strip() else DEFAULT_INDEX_DIR


def index_dir_arg(text: str) -> str:
    """argparse type of --index-dir: an empty path would silently mean the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a directory, or leave the flag out for the default")
    return text


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _embedder(args: argparse.Namespace | None = None):  # type: ignore[no-untyped-def]
    """--embedder, else $NEWSDESK_EMBEDDER, else int8 ONNX when onnxruntime is installed (see default_embedder)."""
    from indexer.embedding import default_embedder

    return default_embedder(getattr(args, "embedder", None))


def cmd_index(args: argparse.Namespace) -> int:
    from indexer.build import index_corpus

    corpus = Path(args.corpus)
    if not corpus.exists():
        raise NewsdeskError(f"Corpus directory {corpus} does not exist.")
    require_directory_or_new(args.index_dir, "--index-dir")
    logging.getLogger("indexer.corpus").setLevel(logging.WARNING)
    if args.engine == "ray":
        result = _ray_index(args, corpus)
    else:
        given = [flag for flag, dest in RAY_FLAGS.items() if getattr(args, dest) is not None]
        if given:
            raise NewsdeskError(f"{', '.join(given)} only apply to the Ray engine; add --engine ray.")
        result = index_corpus(corpus, Path(args.index_dir), _embedder(args), say=_say, rebuild=args.rebuild,
                              late_interaction=args.late_interaction)
    report = result.report
    print(
        f"Indexed {result.articles} articles as {result.chunks} chunks in {result.seconds:.1f}s "
        f"({len(report.skipped)} skipped, {len(report.duplicates)} duplicates; "
        f"{result.embedded} chunks embedded, {result.reused} from cache) -> {args.index_dir}"
    )
    return 0


RAY_FLAGS = {
    "--ray-address": "ray_address", "--ray-num-cpus": "ray_num_cpus", "--ray-actors": "ray_actors",
    "--ray-cpus-per-actor": "ray_cpus_per_actor", "--ray-batch-size": "ray_batch_size",
}


def _ray_index(args: argparse.Namespace, corpus: Path):  # type: ignore[no-untyped-def]
    """Build on Ray (indexer/distributed.py); says how to install Ray when it is missing."""
    from indexer.adapter import model_choice
    from indexer.distributed import RayOptions, ray_index_corpus, require_ray
    from indexer.embedding import SentenceTransformerEmbedder

    require_ray()
    given = {
        "address": args.ray_address, "num_cpus": args.ray_num_cpus, "embed_actors": args.ray_actors,
        "cpus_per_actor": args.ray_cpus_per_actor, "embed_batch_size": args.ray_batch_size,
    }
    options = RayOptions(**{k: v for k, v in given.items() if v is not None})
    # Resolved here, not on each node: a cluster's workers do not see this shell's NEWSDESK_MODEL.
    factory = functools.partial(SentenceTransformerEmbedder, model=model_choice())
    return ray_index_corpus(corpus, Path(args.index_dir), factory, options, say=_say, rebuild=args.rebuild,
                            late_interaction=args.late_interaction)


def require_directory_or_new(path: str | None, flag: str) -> None:
    """Refuse, before any work, a path given for a directory that is an existing file."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise NewsdeskError(f"{flag} {path} is a file, not a directory.")


def cmd_search(args: argparse.Namespace) -> int:
    from indexer.search import Filters, SearchIndex, validate_query

    validate_query(args.query, args.k, args.mode)  # before the model loads, as the API does
    date_from, date_to = _date_arg(args.date_from, "--from"), _date_arg(args.date_to, "--to")
    if date_from and date_to and date_from > date_to:  # Filters would name the API's date_from / date_to
        raise InvalidQuery("date_from", f"--from {date_from} is after --to {date_to}; swap them.")
    filters = Filters(args.source, date_from, date_to)
    index = SearchIndex.load(Path(args.index_dir), _embedder(args))
    hits = index.search(args.query, k=args.k, mode=args.mode, filters=filters)
    if args.json:
        print(json.dumps({"query": args.query, "mode": args.mode, "hits": [h.to_dict() for h in hits]},
                         ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("No matching passages.")
    for hit in hits:
        c = hit.citation
        where = ", ".join(x for x in (c.source, c.date) if x)
        print(f"{hit.rank}. [{hit.score:.3f}] {c.title}" + (f" ({where})" if where else ""))
        print(f"   {c.article_id} chars {c.start}-{c.end}")
        print(textwrap.indent(textwrap.fill(" ".join(hit.text.split()), 100), "   "))
        print()
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from indexer.answer import answer_question
    from indexer.search import SearchIndex, validate_question

    validate_question(args.question)
    index = SearchIndex.load(Path(args.index_dir), _embedder())
    answer = answer_question(index, args.question, k=args.k)
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False, indent=2))
        return 0
    label = "Answer" if answer.answerable else "Not found"
    print(f"{label} (confidence {answer.confidence:.2f}):")
    print(textwrap.indent(textwrap.fill(answer.answer, 100), "  "))
    for number, c in enumerate(answer.citations, 1):
        where = ", ".join(x for x in (c.source, c.date) if x)
        print(f"\n[{number}] {c.title}" + (f" ({where})" if where else ""))
        print(f"    {c.article_id} chars {c.start}-{c.end}" + (f"  {c.url}" if c.url else ""))
        if " ".join(c.quote.split()) not in answer.answer:  # a second article's wording of the same fact
            print(textwrap.indent(textwrap.fill(f"“{' '.join(c.quote.split())}”", 96), "    "))
    if not answer.answerable and answer.passages:
        print("\nClosest passages:")
        for hit in answer.passages:
            print(f"  {hit.rank}. [{hit.score:.3f}] {hit.citation.title} ({hit.citation.article_id})")
            print(textwrap.indent(textwrap.fill(" ".join(hit.text.split()), 100), "     "))
    return 0


def _date_arg(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(flag, f"{flag} must be a date as YYYY-MM-DD, got {value!r}") from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if not 1 <= number <= 100:
        raise argparse.ArgumentTypeError("must be between 1 and 100")
    return number


def _at_least_one(kind: type, low: float = 1) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}")
        return number

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsdesk", description="Semantic search over news articles.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    index_dir_help = f"index directory (default: $NEWSDESK_INDEX_DIR or {DEFAULT_INDEX_DIR})"
    embedder_help = "onnx (int8, fast), st (sentence-transformers fp32) or auto (default: $NEWSDESK_EMBEDDER or auto)"
    p = add("index", cmd_index, "Index a folder of articles and publish the index atomically.")
    p.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS), help="corpus directory (default: corpus/)")
    p.add_argument("--index-dir", type=index_dir_arg, default=str(default_index_dir()), help=index_dir_help)
    p.add_argument("--embedder", choices=["auto", "onnx", "st"], help=embedder_help)
    p.add_argument("--rebuild", action="store_true",
                   help="build even when the published index is up to date with the corpus and settings")
    p.add_argument("--late-interaction", action=argparse.BooleanOptionalAction, default=None,
                   help="store each chunk's token vectors (sign bits, 48 bytes a token), so that hybrid search "
                        "re-scores its top 40 passages by late interaction (default: on; --no-late-interaction "
                        "gives an index a third to a half the size that searches a little less well)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: a Ray Data pipeline (needs pip install 'newsdesk[distributed]')")
    p.add_argument("--ray-address", help="Ray cluster, e.g. auto or ray://HOST:10001 (default: start a local one)")
    p.add_argument("--ray-num-cpus", type=_at_least_one(int), help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--ray-actors", type=_at_least_one(int),
                   help="embedding actors, each loading the model once (default: as many as the CPUs allow)")
    p.add_argument("--ray-cpus-per-actor", type=_at_least_one(float, 0.01), help="CPUs per embedding actor (default 1)")
    p.add_argument("--ray-batch-size", type=_at_least_one(int), help="chunks per embedding batch (default 256)")

    p = add("search", cmd_search, "Search the index and print ranked, cited passages.")
    p.add_argument("query")
    p.add_argument("-k", type=_positive_int, default=5, help="number of passages (1-100, default 5)")
    p.add_argument("--mode", choices=["hybrid", "dense", "lexical"], default="hybrid")
    p.add_argument("--source", help="only articles from this source")
    p.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", help="only articles on or after this date")
    p.add_argument("--to", dest="date_to", metavar="YYYY-MM-DD", help="only articles on or before this date")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--index-dir", type=index_dir_arg, default=str(default_index_dir()), help=index_dir_help)
    p.add_argument("--embedder", choices=["auto", "onnx", "st"], help=embedder_help)

    p = add("ask", cmd_ask, "Answer a question with sentences quoted from the articles, each one cited.")
    p.add_argument("question")
    p.add_argument("-k", type=_positive_int, default=5, help="closest passages returned alongside (1-100, default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--index-dir", type=index_dir_arg, default=str(default_index_dir()), help=index_dir_help)

    for register in _extensions():
        register(add)
    return parser


def _extensions() -> list[Callable[..., None]]:
    """Subcommands that live with the parts they drive (serve in api/, eval and bench in eval/)."""
    registers = []
    for module in ("api.cli", "eval.cli"):
        try:
            registers.append(__import__(module, fromlist=["register"]).register)
        except ImportError:
            continue
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except NewsdeskError as exc:
        print(f"newsdesk: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:
        if not _file_system_refusal(exc):
            raise  # a bug or a network failure: its traceback is the useful report
        paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
        print(f"newsdesk: error: {exc.strerror or exc}" + (f": {paths}" if paths else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("newsdesk: interrupted", file=sys.stderr)
        return 130


def _file_system_refusal(exc: OSError) -> bool:
    """A path that is a file, is missing or is not writable, or a full or read-only disk."""
    refusals = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)
    return isinstance(exc, refusals) or exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


if __name__ == "__main__":
    sys.exit(main())
