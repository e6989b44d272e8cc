"""The retrain service over HTTP: Cloud Tasks, Scheduler and Pub/Sub push bodies queue retrains; nothing trains."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from glucokit import retrain_service
from glucokit.project import PROJECT_DIR
from glucokit.sessions import Connection, as_user
from owners import Owner


@pytest.fixture
def service(database_url: str) -> Iterator[str]:
    server = retrain_service.server(0, lambda: psycopg.connect(database_url), host="127.0.0.1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post(url: str, document: Any) -> tuple[int, dict[str, Any] | None, str]:
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST")  # noqa: S310 - a local test server
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            body = response.read()
            return response.status, json.loads(body) if body else None, response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers.get("Content-Type", "")


def pubsub(document: dict[str, Any]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(document).encode()).decode()
    return {"message": {"data": data, "messageId": "1", "attributes": {}}, "subscription": "projects/p/subscriptions/s"}


def queued(conn: Connection, owner: Owner) -> list[tuple[str, str]]:
    with as_user(conn, owner.user):
        return conn.execute("select trigger::text, status::text from public.retrain_request").fetchall()  # type: ignore[return-value]


def test_a_cloud_tasks_body_queues_a_retrain(service: str, conn: Connection, owner: Owner) -> None:
    status, body, _ = post(service, {"action": "retrain", "person_id": str(owner.person), "trigger": "performance"})
    assert status == 202
    assert body is not None
    assert (body["queued"], body["person_id"]) == ("retrain", str(owner.person))
    assert queued(conn, owner) == [("performance", "queued")]


def test_a_pubsub_push_queues_a_retrain(service: str, conn: Connection, owner: Owner) -> None:
    status, _, _ = post(service, pubsub({"action": "retrain", "person_id": str(owner.person), "trigger": "new_data"}))
    assert status == 202
    assert queued(conn, owner) == [("new_data", "queued")]


def test_a_scheduler_sweep_queues_due_persons(service: str) -> None:
    status, body, _ = post(service, {"action": "sweep", "max_age_hours": 24})
    assert status == 202
    assert body is not None
    assert body["queued"] == "sweep"
    assert isinstance(body["persons"], int)


def test_a_bad_command_gets_a_problem(service: str) -> None:
    status, body, content_type = post(service, {"action": "retrain", "person_id": "not-a-uuid"})
    assert (status, content_type) == (400, "application/problem+json")
    assert body is not None
    assert body["detail"].startswith("retrain needs a person_id (uuid) and a trigger (initial, scheduled, new_data")


def test_a_bad_pubsub_message_is_acknowledged_not_redelivered(service: str) -> None:
    status, body, _ = post(service, pubsub({"action": "train everyone"}))
    assert (status, body) == (204, None)


def test_the_health_check_answers(service: str) -> None:
    with urllib.request.urlopen(f"{service}/healthz", timeout=10) as response:  # noqa: S310
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})


def test_the_cloud_run_entry_point_serves_on_port_and_stops_on_sigterm(database_url: str) -> None:
    environment = os.environ | {"DATABASE_URL": database_url, "PORT": "0"}
    process = subprocess.Popen(
        [sys.executable, str(PROJECT_DIR / "workers" / "retrain_service.py")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("listening on port ")
    port = int(line.split()[-1])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert time.monotonic() - began < 10
