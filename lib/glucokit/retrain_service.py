"""The retrain service: an HTTP endpoint that queues retrains, for Pub/Sub push, Cloud Scheduler and Cloud Tasks.

It only ever enqueues (``retrain_queue``), answering within milliseconds; the
training happens in the retrain job. Commands, as JSON:

    {"action": "retrain", "person_id": "<uuid>", "trigger": "new_data", "reason": "..."}
    {"action": "sweep", "max_age_hours": 24}

sent as the request body (Cloud Scheduler, Cloud Tasks) or as the base64
``message.data`` of a Pub/Sub push. A retrain is queued by the worker role
scoped to that one person; a sweep (persons whose active model is older than
``max_age_hours``) by the unscoped worker role. Answers: 202 with what was
queued; 400 (problem+json) for a command that cannot be understood, except
from Pub/Sub, which would redeliver it forever: such messages are acknowledged
(204) and logged; 503 when the database fails, so that the sender retries.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from uuid import UUID

import psycopg

from glucokit import retrain_queue
from glucokit.retrain_queue import Trigger
from glucokit.sessions import Connection, Purpose, as_worker

log = logging.getLogger("glucokit.retrain_service")

MAX_BODY_BYTES: Final = 64 * 1024
PROBLEM_JSON: Final = "application/problem+json"


class BadCommand(ValueError):
    """A body that is not a command this service understands."""


def command(body: bytes) -> tuple[dict[str, Any], bool]:
    """The command a request carries, and whether it came through Pub/Sub push."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadCommand(f"the body is not JSON: {error}") from error
    if not isinstance(document, dict):
        raise BadCommand("the body is not a JSON object")
    pubsub = isinstance(document.get("message"), dict) and "subscription" in document
    if pubsub:
        try:
            document = json.loads(base64.b64decode(document["message"].get("data", ""), validate=True))
        except (binascii.Error, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise BadCommand(f"message.data is not base64-encoded JSON: {error}") from error
        if not isinstance(document, dict):
            raise BadCommand("message.data is not a JSON object")
    return document, pubsub


def execute(conn: Connection, order: dict[str, Any]) -> dict[str, Any]:
    """Queues what ``order`` asks for; returns what was queued."""
    action = order.get("action")
    if action == "retrain":
        try:
            person_id = UUID(str(order.get("person_id")))
            trigger = Trigger(order.get("trigger", Trigger.USER_REQUEST))
        except ValueError as error:
            raise BadCommand(
                f"retrain needs a person_id (uuid) and a trigger ({', '.join(Trigger)}): {error}"
            ) from error
        with as_worker(conn, person_id, Purpose.TRAINING, f"{trigger} retrain requested through the retrain service"):
            request_id = retrain_queue.enqueue(conn, person_id, trigger, order.get("reason"))
        return {"queued": "retrain", "person_id": str(person_id), "request_id": str(request_id)}
    if action == "sweep":
        hours = order.get("max_age_hours", 24)
        if not isinstance(hours, int | float) or isinstance(hours, bool) or hours <= 0:
            raise BadCommand("sweep needs max_age_hours, a positive number")
        with as_worker(conn, None):
            queued = retrain_queue.enqueue_due(conn, timedelta(hours=hours))
        return {"queued": "sweep", "persons": queued}
    raise BadCommand(f"unknown action {action!r}: send retrain or sweep")


def handler(connect: Callable[[], Connection]) -> type[BaseHTTPRequestHandler]:
    """A request handler that opens a database connection with ``connect`` for each command."""

    class RetrainHandler(BaseHTTPRequestHandler):
        server_version = "glucokit-retrain"

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(HTTPStatus.OK, {"status": "ok"})
            else:
                self._problem(HTTPStatus.NOT_FOUND, f"no resource {self.path}: POST commands to /")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a command is at most {MAX_BODY_BYTES} bytes")
                return
            body = self.rfile.read(length)
            pubsub = False
            try:
                order, pubsub = command(body)
                with connect() as conn:
                    done = execute(conn, order)
            except BadCommand as bad:
                if pubsub:  # Pub/Sub redelivers anything not acknowledged: drop it, loudly
                    log.error("dropped a Pub/Sub message that is not a command: %s", bad)
                    self._send(HTTPStatus.NO_CONTENT, None)
                else:
                    self._problem(HTTPStatus.BAD_REQUEST, str(bad))
                return
            except psycopg.Error as failure:
                log.error("the database refused a command: %s", failure)
                self._problem(HTTPStatus.SERVICE_UNAVAILABLE, "the database is unavailable: retry later")
                return
            self._send(HTTPStatus.ACCEPTED, done)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _send(
            self, status: HTTPStatus, document: dict[str, Any] | None, content_type: str = "application/json"
        ) -> None:
            data = b"" if document is None else json.dumps(document).encode()
            self.send_response(status)
            if document is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _problem(self, status: HTTPStatus, detail: str) -> None:
            problem = {"type": "about:blank", "title": status.phrase, "status": int(status), "detail": detail}
            self._send(status, problem, PROBLEM_JSON)

    return RetrainHandler


def server(port: int, connect: Callable[[], Connection], host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - Cloud Run sends to the container's port
    return ThreadingHTTPServer((host, port), handler(connect))
