"""Structured logs: JSON lines for Cloud Logging on Cloud Run, readable lines in a terminal."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from glucokit import logs

TRACE = "105445aa7843bc8bf206b12000100000"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def _json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out, err = capsys.readouterr()
    assert err == ""
    return [json.loads(line) for line in out.splitlines()]


def test_on_cloud_run_each_record_is_a_json_line_cloud_logging_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GLUCOKIT_LOG_FORMAT", raising=False)
    monkeypatch.setenv("CLOUD_RUN_JOB", "glucokit-retrain-job")
    assert logs.configure("retrain_job").json_lines
    log = logging.getLogger("glucokit.test")
    log.debug("not shown")
    log.info("%s: 1.0.0 (ridge) active", "p-1", extra={"person_id": "p-1", "request_id": "r-1"})
    log.warning("slow")
    try:
        raise RuntimeError("the model would not load")
    except RuntimeError:
        log.exception("retrain failed")
    log.critical("down")
    info, warning, error, critical = _json_lines(capsys)
    assert info["severity"] == "INFO"
    assert info["message"] == "p-1: 1.0.0 (ridge) active"
    assert (info["person_id"], info["request_id"], info["logger"]) == ("p-1", "r-1", "glucokit.test")
    assert datetime.fromisoformat(str(info["time"])).tzinfo is not None
    assert "stack_trace" not in info
    assert (warning["severity"], error["severity"], critical["severity"]) == ("WARNING", "ERROR", "CRITICAL")
    assert error["message"] == "retrain failed"
    assert str(error["stack_trace"]).startswith("Traceback (most recent call last):")
    assert str(error["stack_trace"]).endswith("RuntimeError: the model would not load")


def test_severity_follows_cloud_loggings_names() -> None:
    levels = [logging.NOTSET, logging.DEBUG, logging.INFO, 25, logging.WARNING, logging.ERROR, logging.CRITICAL, 60]
    assert [logs.severity(level) for level in levels] == [
        "DEFAULT", "DEBUG", "INFO", "INFO", "WARNING", "ERROR", "CRITICAL", "CRITICAL",
    ]  # fmt: skip


def test_a_requests_logs_carry_its_cloud_trace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLUCOKIT_LOG_FORMAT", "json")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "glucokit-prod")
    logs.configure("api_service")
    app = FastAPI()

    @app.get("/")
    def served() -> dict[str, str]:
        logging.getLogger("glucokit.test").info("served")
        return {}

    with TestClient(logs.TraceRequests(app)) as client:
        client.get("/", headers={"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"})
        client.get("/")
    logging.getLogger("glucokit.test").info("outside")
    # The test client's own records (httpx) are not the app's.
    traced, untraced, outside = [line for line in _json_lines(capsys) if line["logger"] == "glucokit.test"]
    assert traced["logging.googleapis.com/trace"] == f"projects/glucokit-prod/traces/{TRACE}"
    assert traced["logging.googleapis.com/spanId"] == "0000000000000001"
    assert traced["logging.googleapis.com/trace_sampled"] is True
    assert "logging.googleapis.com/trace" not in untraced
    assert "logging.googleapis.com/trace" not in outside


def test_trace_headers_are_parsed_or_ignored() -> None:
    assert logs.Trace.parse(f"{TRACE}/12345;o=0") == logs.Trace(TRACE, f"{12345:016x}", sampled=False)
    assert logs.Trace.parse(TRACE.upper()) == logs.Trace(TRACE, None, sampled=False)
    assert logs.Trace.parse("not-a-trace/1") is None
    assert logs.Trace.parse("") is None


def test_in_a_terminal_information_goes_to_stdout_and_problems_to_stderr_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("K_SERVICE", "CLOUD_RUN_JOB", "GLUCOKIT_LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    assert not logs.configure("forecast_job").json_lines
    log = logging.getLogger("glucokit.test")
    log.info("task 0/1: 1 persons", extra={"person_id": "p-1"})
    log.warning("slow")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("forecast failed")
    out, err = capsys.readouterr()
    assert out == "task 0/1: 1 persons\n"
    assert err.startswith("forecast_job: slow\nforecast_job: forecast failed\nTraceback (most recent call last):\n")
    assert err.endswith("RuntimeError: boom\n")


def test_a_malformed_log_format_still_logs_and_is_reported_by_the_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GLUCOKIT_LOG_FORMAT", "yaml")
    monkeypatch.setenv("K_SERVICE", "glucokit-api")
    assert logs.configure("api_service").json_lines
    logging.getLogger("glucokit.test").error("GLUCOKIT_LOG_FORMAT='yaml': ...")
    (line,) = _json_lines(capsys)
    assert line["severity"] == "ERROR"
