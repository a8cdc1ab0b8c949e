"""Schemathesis against the service's own OpenAPI schema, in process (ASGI): no 5xx, no off-schema reply.

Every operation gets a bounded number of generated requests that fit the schema
(positive) and that break it (negative); each response goes through schemathesis's
default checks: no server error; status code, content type, headers and body as the
schema says; invalid requests refused, valid ones accepted; authentication enforced
(it retries each write without the key and with a wrong one). Writes are fuzzed with
the key, so they really rebuild the (small) index.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.app import create_app
from api.settings import Settings
from indexer.build import build_index
from indexer.corpus import load_corpus
from indexer.embedding import FakeEmbedder
from tests.conftest import SEED_CORPUS

KEY = "fuzz-key-0123456789abcdef"
AUTH = {"X-API-Key": KEY, "Authorization": f"Bearer {KEY}"}
MAX_EXAMPLES = 30  # per operation and mode: bounded, so CI time is too
REQUEST_TIMEOUT_S = 120
# Small limits, so generated values reach them.
LIMITS = {"max_query_chars": 200, "max_k": 20, "max_article_chars": 2000, "max_articles_per_write": 3}
# Rules across fields, which OpenAPI cannot state: a request that breaks one fits the
# schema and is still refused with 422 and this message. Nothing else may refuse valid data.
CROSS_FIELD_RULES = (
    "is after date_to",  # date_from > date_to
    "start and end go together",
    "must be less than end",
    "is past the end of the article",
    "appears twice",  # the same article_id twice in one POST /articles
    # Not across fields, but past what a portable pattern states: a query of only invisible,
    # combining or unassigned characters (Unicode categories; JSON Schema's ECMA-262 \p{..}
    # needs the u flag, Python's re has none). The descriptions say it in words.
    "no letters, digits or symbols",
)


def _operations() -> list[tuple[str, str, bool]]:
    """(method, path, takes input) of every documented operation; building an app loads nothing."""
    paths = create_app(Settings(index_dir=Path("unused"), api_key=KEY, **LIMITS)).openapi()["paths"]
    return sorted(
        (method.upper(), path, bool(spec.get("parameters") or spec.get("requestBody")))
        for path, methods in paths.items() for method, spec in methods.items()
    )


def case_takes_input(operation) -> bool:
    spec = operation.definition.raw
    return bool(spec.get("parameters") or spec.get("requestBody"))


def valid_data_is_accepted(ctx, response, case):
    """schemathesis's positive_data_acceptance, except for the cross-field 422s above."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        message = json.loads(response.content)["error"]["message"] if response.status_code == 422 else ""
        if any(rule in message for rule in CROSS_FIELD_RULES):
            return None
        raise


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fuzz") / "index"
    articles, _ = load_corpus(SEED_CORPUS)
    build_index(articles, root, FakeEmbedder(), progress=False)
    # Reload off: the index changes only by the fuzzed writes.
    app = create_app(Settings(index_dir=root, api_key=KEY, reload_interval=0, **LIMITS), embedder=FakeEmbedder())
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode}")
    for method, path, takes_input in _operations()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if takes_input or mode == GenerationMode.POSITIVE  # nothing to get wrong without input
]


@pytest.mark.parametrize("method, path, mode", CASES)
def test_operation_conforms_to_its_schema(api_schema, method: str, path: str, mode: GenerationMode):
    operation = api_schema[path][method]
    statuses: Counter[int] = Counter()

    @given(case=operation.as_strategy(generation_mode=mode))
    # derandomize: the same generated requests on every CI run, so a red build is reproducible;
    # no shrinking: each write rebuilds the index, so shrinking a failure would take many minutes,
    # and the failing request is reported as it was sent.
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        # A write rebuilds the index: on a loaded 2-core CI machine that can pass schemathesis's 10 s default.
        response = case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance],
                                          additional_checks=[valid_data_is_accepted], timeout=REQUEST_TIMEOUT_S)
        statuses[response.status_code] += 1

    check()
    print(f"\n{method} {path} {mode}: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert all(status < 500 for status in statuses)
    # Not vacuous: operations with input got many distinct requests (without input, one is all there is).
    assert sum(statuses.values()) >= (MAX_EXAMPLES // 2 if case_takes_input(operation) else 1)
