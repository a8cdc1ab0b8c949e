"""One API replica on the fake embedder, for tests (the CLI serves only the real model).

    python tests/replica_server.py INDEX_DIR PORT

Settings otherwise come from NEWSDESK_* variables, as for `newsdesk serve`.
"""

import sys

import uvicorn

from api.app import create_app
from api.settings import Settings
from indexer.embedding import FakeEmbedder

if __name__ == "__main__":
    settings = Settings(index_dir=sys.argv[1])
    uvicorn.run(create_app(settings, embedder=FakeEmbedder()), host="127.0.0.1", port=int(sys.argv[2]),
                log_level="warning")
