"""Prometheus text-format metrics for the service (no dependency: a few counters)."""

from __future__ import annotations

import bisect
import collections
import itertools
import threading

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.latency_sum: collections.Counter[str] = collections.Counter()
        self.latency_buckets: dict[str, list[int]] = collections.defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.compilations = 0

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """One request (called from the event loop only, as is ``render``: no lock)."""
        self.requests[(endpoint, status)] += 1
        self.latency_sum[endpoint] += seconds
        self.latency_buckets[endpoint][bisect.bisect_left(BUCKETS, seconds)] += 1

    def compiled(self, event: str, duration: float, **kwargs: object) -> None:
        """JAX's compile listener: any thread may compile, hence the lock."""
        if event.endswith("backend_compile_duration"):
            with self._lock:
                self.compilations += 1

    def render(self, batch_count: int, batch_fits: int, queue_depth: int) -> str:
        with self._lock:
            out = [
                "# HELP jaxfit_requests_total Requests by endpoint and HTTP status.",
                "# TYPE jaxfit_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                out.append(f'jaxfit_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            out += [
                "# HELP jaxfit_request_seconds Request latency.",
                "# TYPE jaxfit_request_seconds histogram",
            ]
            for endpoint, counts in sorted(self.latency_buckets.items()):
                buckets = list(itertools.accumulate(counts))  # cumulative, as Prometheus wants
                for bound, n in zip(BUCKETS, buckets):
                    out.append(f'jaxfit_request_seconds_bucket{{endpoint="{endpoint}",le="{bound}"}} {n}')
                out.append(f'jaxfit_request_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} {buckets[-1]}')
                out.append(
                    f'jaxfit_request_seconds_sum{{endpoint="{endpoint}"}} {self.latency_sum[endpoint]:.6f}'
                )
                out.append(f'jaxfit_request_seconds_count{{endpoint="{endpoint}"}} {buckets[-1]}')
            out += [
                "# HELP jaxfit_compilations_total XLA compilations in this process.",
                "# TYPE jaxfit_compilations_total counter",
                f"jaxfit_compilations_total {self.compilations}",
            ]
        out += [
            "# HELP jaxfit_batch_size Fit requests per formed batch.",
            "# TYPE jaxfit_batch_size summary",
            f"jaxfit_batch_size_sum {batch_fits}",
            f"jaxfit_batch_size_count {batch_count}",
            "# HELP jaxfit_queue_depth Fit requests waiting.",
            "# TYPE jaxfit_queue_depth gauge",
            f"jaxfit_queue_depth {queue_depth}",
        ]
        return "\n".join(out) + "\n"
