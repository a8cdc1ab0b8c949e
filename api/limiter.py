"""Load shedding: a fixed number of searches at once; the rest get 503 + Retry-After at once.

Queueing without bound would only turn overload into ever longer waits (and memory);
refusing early lets a client or load balancer retry elsewhere or later.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from api.errors import ApiError
from api.metrics import Metrics


class SearchLimiter:
    """Counts searches in flight; `slot()` admits one or refuses it.

    Used only from the event loop (async endpoints), so a plain counter is safe.
    """

    def __init__(self, limit: int, retry_after: int, metrics: Metrics) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.metrics = metrics
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `limit` slots for the duration of a search, or raise a 503."""
        if self.in_flight >= self.limit:
            self.metrics.requests_shed.inc()
            raise ApiError(
                503, "overloaded",
                f"The service is answering {self.limit} searches already (NEWSDESK_MAX_CONCURRENT_SEARCHES); "
                f"retry in {self.retry_after} s.",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.in_flight += 1
        self.metrics.searches_in_flight.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1
            self.metrics.searches_in_flight.set(self.in_flight)
