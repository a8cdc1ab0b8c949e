"""`newsdesk serve`: run the HTTP API on an existing index.

It does not build a missing index: indexing a large corpus takes minutes and
belongs to `newsdesk index`, so serve refuses with the command to run instead
(scripts/serve.sh runs both).
"""

from __future__ import annotations

import argparse
import errno
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.cli import DEFAULT_INDEX_DIR, index_dir_arg
from indexer.errors import IncompatibleIndex, NewsdeskError

if TYPE_CHECKING:
    from indexer.embedding import Embedder

Add = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


def register(add: Add) -> None:
    """Add the `serve` subcommand to the newsdesk CLI."""
    p = add("serve", cmd_serve, "Serve the HTTP API (search, ask, articles) on an existing index.")
    p.add_argument("--host", help="interface to bind (default: $NEWSDESK_HOST or 127.0.0.1)")
    p.add_argument("--port", type=_port, help="port (default: $NEWSDESK_PORT or 8000)")
    p.add_argument("--index-dir", type=index_dir_arg,
                   help=f"index directory (default: $NEWSDESK_INDEX_DIR or {DEFAULT_INDEX_DIR})")
    p.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                   help="server log level (default: info)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the index, print the URL, and serve until interrupted."""
    from pydantic import ValidationError

    from api.settings import Settings

    given = {"host": args.host, "port": args.port, "index_dir": args.index_dir, "log_level": args.log_level}
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise NewsdeskError(f"Invalid setting ({problems}). Check the NEWSDESK_* environment variables.") from None
    embedder = _embedder(settings.embed_threads, settings.micro_batch)
    check_index(settings.index_dir, embedder)  # cheap: before the model loads
    check_bindable(settings.host, settings.port)  # before loading, which takes a while on a large index

    import uvicorn

    from api.app import create_app
    from api.reload import load_checked

    # Every file, and one search, before listening: a truncated, damaged or mismatched
    # index stops the command here (exit 2, naming the file) instead of being served.
    index = load_checked(settings.index_dir, embedder, settings.late_interaction_depth)
    url = service_url(settings.host, settings.port)
    print(f"newsdesk: serving {settings.index_dir} at {url}  (API docs: {url}docs; Ctrl+C stops)", flush=True)
    uvicorn.run(create_app(settings, embedder=embedder, index=index), host=settings.host, port=settings.port,
                log_level=settings.log_level)
    return 0


def check_bindable(host: str, port: int) -> None:
    """Fail now, in one line, if the server could not listen on host:port (taken, or no such interface).

    uvicorn would find out only after the index has loaded, and say it as a log record. The probe
    binds as asyncio's create_server (which uvicorn uses) does: every address the host resolves
    to, IPv6 sockets v6-only, and an address family the machine lacks skipped.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise NewsdeskError(f"Cannot listen on {host}: {exc.strerror}; check --host or NEWSDESK_HOST.") from None
    usable = 0
    for family, kind, proto, _, address in {(i[0], i[1], i[2], i[3], i[4]): None for i in infos}:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:  # e.g. ::1 on a machine without IPv6, as asyncio skips
                    continue
                taken = exc.errno == errno.EADDRINUSE
                why = "is already in use (another server?); choose another with --port or NEWSDESK_PORT" if taken \
                    else f"cannot be used ({exc.strerror}); check --host / --port"
                raise NewsdeskError(f"Port {port} on {address[0]} {why}.") from None
            usable += 1
    if not usable:
        raise NewsdeskError(f"Cannot listen on {host}: no address of it belongs to this machine; check --host.")


def check_index(root: Path, embedder: Embedder) -> None:
    """Fail now, with the command that fixes it, if `root` holds no index `embedder` can serve."""
    from indexer.manifest import Manifest
    from indexer.publish import current_build

    build = current_build(root)  # IndexNotFound says: newsdesk index corpus/ --index-dir <root>
    manifest = Manifest.read(build)
    try:
        manifest.check_compatible(embedder.model_id, embedder.dimension)
    except IncompatibleIndex as exc:
        raise IncompatibleIndex(f"{build / 'manifest.json'}: {exc}") from None


def _embedder(threads: int, micro_batch: bool) -> Embedder:
    """The service's embedder (see api.reload.service_embedder); tests replace this."""
    from api.reload import service_embedder

    return service_embedder(threads, micro_batch)


def service_url(host: str, port: int) -> str:
    """The URL to open: a wildcard bind is reachable on loopback."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return port
