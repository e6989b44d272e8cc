"""Logging for the workers and the API, through the standard ``logging`` module; each entry point calls
``configure`` once, first thing.

On Cloud Run (or with GLUCOKIT_LOG_FORMAT=json) every record is one JSON line on stdout, in the fields
Cloud Logging reads: ``severity``, ``message``, ``time``, ``logging.googleapis.com/trace`` for a request
that came with X-Cloud-Trace-Context (``TraceRequests``; needs GOOGLE_CLOUD_PROJECT), and the traceback
of an error in ``stack_trace``, where Error Reporting finds it. Whatever a caller passes in ``extra``
(``person_id``, ``request_id``) becomes a field of its own.

In a terminal the lines are for reading: information on stdout as it is, warnings and errors on
stderr after the program's name (``retrain_job: ...``), with their traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from glucokit.settings import LogSettings, SettingsError, load

TRACE_HEADER: Final = b"x-cloud-trace-context"
TRACE_FIELD: Final = "logging.googleapis.com/trace"
SPAN_FIELD: Final = "logging.googleapis.com/spanId"
SAMPLED_FIELD: Final = "logging.googleapis.com/trace_sampled"


@dataclass(frozen=True)
class Trace:
    """A request's place in Cloud Trace, from its X-Cloud-Trace-Context header (``TRACE_ID/SPAN_ID;o=1``)."""

    trace_id: str
    span_id: str | None
    sampled: bool

    @classmethod
    def parse(cls, header: str) -> Trace | None:
        trace, _, rest = header.partition("/")
        span, _, options = rest.partition(";")
        if not trace.strip() or not all(c in "0123456789abcdefABCDEF" for c in trace.strip()):
            return None
        # Cloud Logging wants the span as 16 hex digits; the header carries it in decimal.
        span_id = f"{int(span):016x}" if span.isdigit() and int(span) < 2**64 else None
        return cls(trace.strip().lower(), span_id, options.strip() == "o=1")


_trace: ContextVar[Trace | None] = ContextVar("glucokit_trace", default=None)


class TraceRequests:
    """ASGI middleware: the logs written while serving a request carry its Cloud Trace context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = dict(scope.get("headers", ())).get(TRACE_HEADER) if scope["type"] == "http" else None
        token = _trace.set(Trace.parse(header.decode("latin-1")) if header else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _trace.reset(token)


def severity(level: int) -> str:
    """Cloud Logging's LogSeverity of a ``logging`` level (levels between two take the lower)."""
    for floor, name in ((logging.CRITICAL, "CRITICAL"), (logging.ERROR, "ERROR"), (logging.WARNING, "WARNING")):
        if level >= floor:
            return name
    return "INFO" if level >= logging.INFO else "DEBUG" if level >= logging.DEBUG else "DEFAULT"


class CloudLoggingFormatter(JsonFormatter):
    """One JSON object per record, in the fields Cloud Logging's structured logging reads."""

    def __init__(self, project: str | None) -> None:
        super().__init__(["message"], rename_fields={"exc_info": "stack_trace", "stack_info": "stack_trace"})
        self.project = project

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["severity"] = severity(record.levelno)
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat()
        log_data["logger"] = record.name
        trace = _trace.get()
        if trace is not None and self.project:
            log_data[TRACE_FIELD] = f"projects/{self.project}/traces/{trace.trace_id}"
            if trace.span_id is not None:
                log_data[SPAN_FIELD] = trace.span_id
            log_data[SAMPLED_FIELD] = trace.sampled


class _Below(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


def configure(program: str) -> LogSettings:
    """Sends every record at INFO and above to stdout/stderr in the format of the place it runs (see the
    module docstring); ``program`` names the entry point in a terminal's warnings and errors."""
    try:
        settings = load(LogSettings)
    except SettingsError:
        # A malformed GLUCOKIT_LOG_FORMAT: log as if it were unset, so that the entry point's own settings
        # error, which names it, comes out in the format of the place it runs.
        settings = load(
            LogSettings, {name: value for name, value in os.environ.items() if name != "GLUCOKIT_LOG_FORMAT"}
        )
    handlers: list[logging.Handler]
    if settings.json_lines:
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(CloudLoggingFormatter(settings.google_cloud_project))
        handlers = [handler]
    else:
        information = logging.StreamHandler(sys.stdout)
        information.addFilter(_Below(logging.WARNING))
        information.setFormatter(logging.Formatter("%(message)s"))
        problems = logging.StreamHandler(sys.stderr)
        problems.setLevel(logging.WARNING)
        problems.setFormatter(logging.Formatter(f"{program}: %(message)s"))
        handlers = [information, problems]
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    return settings


def uvicorn_log_config(settings: LogSettings) -> dict[str, Any] | None:
    """uvicorn's ``log_config``: in JSON its records go through the root logger like every other;
    in a terminal uvicorn keeps its own familiar lines (on stderr)."""
    return None if settings.json_lines else LOGGING_CONFIG
