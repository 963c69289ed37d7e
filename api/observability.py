"""Structured JSON logs with request ids, and Prometheus metrics.

Logs carry ids, codes and timings, never PHI: no names, no file names, no free text that
a user typed. Events bind only what is listed here.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response

REQUEST_ID_HEADER = "X-Request-ID"


def configure_logging(level: str = "INFO") -> None:
    """One JSON object per line on stderr, ours and every library's (uvicorn, websockets,
    the embedded PostgreSQL's initdb/pg_ctl output, Python warnings)."""
    stamped = [structlog.processors.add_log_level,
               structlog.processors.TimeStamper(fmt="iso", utc=True)]
    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
    ))
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)
    logging.captureWarnings(True)
    for noisy in ("uvicorn.access", "pyvips"):  # libvips logs every threadpool at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *stamped,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (redirected stderr is honoured)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # Resolved per logger, not at configure time, so redirected stderr is honoured.
    return structlog.PrintLogger(sys.stderr)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "orthovault_http_request_seconds", "HTTP request latency",
            ["method", "route", "operation", "status"], registry=self.registry,
        )
        self.uploads = Counter(
            "orthovault_uploads_total", "Uploads by outcome", ["outcome"], registry=self.registry
        )

    def add_lag_collector(self, lags: Callable[[], Iterable[tuple[str, int, int, bool]]]) -> None:
        """``lags`` yields (runner name, lag in events, restarts, running) at scrape time."""

        class _Collector:
            def collect(self):  # type: ignore[no-untyped-def]
                lag = GaugeMetricFamily("orthovault_projection_lag_events",
                                        "Events not yet applied", labels=["runner"])
                restarts = GaugeMetricFamily("orthovault_runner_restarts",
                                             "Runner restarts since start", labels=["runner"])
                up = GaugeMetricFamily("orthovault_runner_up", "Runner running (1) or not",
                                       labels=["runner"])
                for name, behind, restarted, running in lags():
                    lag.add_metric([name], behind)
                    restarts.add_metric([name], restarted)
                    up.add_metric([name], int(running))
                yield from (lag, restarts, up)

        self.registry.register(_Collector())


def request_context_middleware(metrics: Metrics) -> Callable[..., Awaitable[Response]]:
    log = structlog.get_logger("orthovault.http")

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() \
            else uuid.uuid4().hex
        request.state.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = request.scope.get("route")
            template = "unmatched" if route is None else (
                getattr(route, "path", "") or request.url.path)  # GraphQL's route is ""
            # GraphQL: one route, many operations (api/graphql_operation_label.py).
            operation = getattr(request.state, "graphql_operation", "")
            metrics.latency.labels(request.method, template, operation,
                                   str(status)).observe(elapsed)
            log.info("request", method=request.method, route=template, status=status,
                     ms=round(elapsed * 1000, 1), **({"operation": operation} if operation
                                                     else {}))

    return middleware
