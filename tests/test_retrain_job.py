"""The retrain job against the real queue: drains, shards, stops on request, and the Cloud Run entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, LiteralString

import pytest

from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.fhir.ingest import Ingest
from glucokit.jobs import retrain_job
from glucokit.jobs.runner import Shard
from glucokit.modelops import registry, retrain, retrain_queue
from glucokit.modelops.model_store import LocalModelStore, ModelStore
from glucokit.modelops.retrain import Person, RetrainResult, finish
from glucokit.modelops.retrain_queue import Trigger
from glucokit.project import PROJECT_DIR, SIMULATED_DIR
from owners import Owner
from test_cli import glucokit
from test_forecasts import RIDGE


def with_simulated_data(conn: Connection, owner: Owner, bundle: str = "child-001.json.gz") -> Owner:
    """Ingesting 14 simulated days queues the person's initial retrain (the new-data trigger)."""
    Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / bundle)
    return owner


def active_version(conn: Connection, owner: Owner) -> str | None:
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        model = registry.active(conn, owner.person)
    return None if model is None else model.version


def request_status(conn: Connection, owner: Owner) -> list[str]:
    with as_user(conn, owner.user):
        return [str(status) for (status,) in conn.execute("select status::text from public.retrain_request")]


def test_the_job_trains_every_queued_person(conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path) -> None:
    first = with_simulated_data(conn, make_owner(), "child-001.json.gz")
    second = with_simulated_data(conn, make_owner(), "adult-001.json.gz")
    report = retrain_job.run(conn, LocalModelStore(tmp_path))
    assert (report.failed, report.stopped) == ({}, "queue drained")
    assert {result.person_id for result in report.retrained} >= {first.person, second.person}
    for owner in (first, second):
        assert active_version(conn, owner) == "1.0.0"
        assert request_status(conn, owner) == ["done"]


def test_a_task_takes_only_the_persons_of_its_shard(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    with_simulated_data(conn, owner)
    mine = owner.person.int % 2
    elsewhere = retrain_job.run(conn, LocalModelStore(tmp_path), shard=Shard(1 - mine, 2))
    assert owner.person not in {result.person_id for result in elsewhere.retrained}
    assert active_version(conn, owner) is None
    mine_report = retrain_job.run(conn, LocalModelStore(tmp_path), shard=Shard(mine, 2), settings=RIDGE)
    assert active_version(conn, owner) == "1.0.0"
    assert [result.algorithm for result in mine_report.retrained if result.person_id == owner.person] == ["ridge"]


def test_a_stopped_task_claims_nothing(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    with_simulated_data(conn, owner)
    stop = threading.Event()
    stop.set()
    report = retrain_job.run(conn, LocalModelStore(tmp_path), stop=stop)
    assert (report.retrained, report.stopped) == ([], "asked to stop")
    assert request_status(conn, owner) == ["queued"]


def test_the_cloud_run_entry_point_drains_its_shard_and_exits_0(
    database_url: str, conn: Connection, owner: Owner, tmp_path: Path
) -> None:
    with_simulated_data(conn, owner)
    environment = os.environ | {
        "DATABASE_URL": database_url,
        "GLUCOKIT_MODEL_DIR": str(tmp_path),
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
    }
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "workers" / "retrain_job.py")],
        capture_output=True, text=True, env=environment, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{owner.person}: 1.0.0 (" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("task 0/1: ")
    assert result.stdout.splitlines()[-1].endswith(" retrained, 0 failed, queue drained")
    assert (tmp_path / "models" / str(owner.user) / str(owner.person) / "glucose-forecast" / "v1.0.0").is_dir()


def test_the_entry_point_refuses_unknown_model_families(
    database_url: str, conn: Connection, owner: Owner, tmp_path: Path
) -> None:
    with_simulated_data(conn, owner)
    environment = os.environ | {
        "DATABASE_URL": database_url,
        "GLUCOKIT_MODEL_DIR": str(tmp_path),
        "GLUCOKIT_MODEL_FAMILIES": "ridge, lstm",
    }
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "workers" / "retrain_job.py")],
        capture_output=True, text=True, env=environment, timeout=300, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "retrain_job: GLUCOKIT_MODEL_FAMILIES='ridge, lstm': model families must be some of"
        " persistence, ar2, ridge, network; got ridge, lstm\n"
    )
    assert request_status(conn, owner) == ["queued"]


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_job_killed_mid_training_leaves_nothing_and_the_retry_finishes(
    database_url: str, conn: Connection, owner: Owner, tmp_path: Path
) -> None:
    """A real ``kill -9`` of the job process while it trains, then the retry after the claim's lease.

    The retry trains longer than its 4 s lease: no other claim took it over, so extending it before the finish holds.
    """
    with_simulated_data(conn, owner)
    name = f"kill-test-{owner.person}"
    environment = os.environ | {"DATABASE_URL": database_url, "GLUCOKIT_MODEL_DIR": str(tmp_path), "PGAPPNAME": name}
    job = [sys.executable, str(PROJECT_DIR / "workers" / "retrain_job.py")]

    def count(statement: LiteralString) -> int:
        row = conn.execute(statement, (name,)).fetchone()
        conn.commit()
        assert row is not None
        return int(str(row[0]))

    sessions = "select count(*) from pg_stat_activity where application_name = %s"
    # Training: the claim is committed (the request runs) and the worker is between transactions, in Python.
    training = (
        sessions + " and state = 'idle' and exists"
        " (select from public.retrain_request where status = 'running' and attempts = 1)"
    )
    visible = "select count(*) from pgmq.q_glucokit_retrain where vt <= clock_timestamp() and %s::text is not null"

    conn.execute("update private.retrain_config set lease_seconds = 4")
    conn.commit()
    try:
        worker = subprocess.Popen(job, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: count(training) == 1, "training")
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
        _wait_for(lambda: count(sessions) == 0, "the server to drop the killed worker's session")

        assert active_version(conn, owner) is None
        with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
            assert registry.versions(conn, owner.person) == []
            assert conn.execute("select count(*) from public.training_run").fetchone() == (0,)
        assert request_status(conn, owner) == ["running"]  # claimed, and hidden until the lease runs out

        _wait_for(lambda: count(visible) == 1, "the lease to run out")
        retry = subprocess.run(job, capture_output=True, text=True, env=environment, timeout=300, check=False)
    finally:
        conn.rollback()
        conn.execute("update private.retrain_config set lease_seconds = default")
        conn.commit()
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout.splitlines()[-1] == "task 0/1: 1 retrained, 0 failed, queue drained"
    assert active_version(conn, owner) == "1.0.0"
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        runs = conn.execute("select attempt, status::text from public.training_run").fetchall()
    assert runs == [(2, "succeeded")]
    assert request_status(conn, owner) == ["done"]


def owners_on_shards(make_owner: Callable[[], Owner], count: int, wanted: dict[int, int]) -> dict[int, list[Owner]]:
    """Fresh owners until shard ``index`` of ``count`` has ``wanted[index]`` persons, for every index named."""
    found: dict[int, list[Owner]] = {index: [] for index in wanted}
    while any(len(found[index]) < number for index, number in wanted.items()):
        owner = make_owner()
        index = owner.person.int % count
        if index in found and len(found[index]) < wanted[index]:
            found[index].append(owner)
    return found


def test_a_task_finds_its_shard_behind_a_full_batch_of_another(
    conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    shards = owners_on_shards(make_owner, 2, {0: 1, 1: retrain_job.PEEK_BATCH})
    with as_worker(conn, None):
        for other in shards[1]:
            retrain_queue.enqueue(conn, other.person, Trigger.PERFORMANCE, "queued first")
    [mine] = shards[0]
    with_simulated_data(conn, mine)  # queued after all of them
    report = retrain_job.run(conn, LocalModelStore(tmp_path), shard=Shard(0, 2), settings=RIDGE)
    assert ([result.person_id for result in report.retrained], report.stopped) == ([mine.person], "queue drained")
    assert request_status(conn, mine) == ["done"]
    assert all(request_status(conn, other) == ["queued"] for other in shards[1])


def request_row(conn: Connection, owner: Owner) -> tuple[str, int, str | None]:
    """(status, attempts, error) of the person's only retrain request, as its owner sees it."""
    with as_user(conn, owner.user):
        row = conn.execute("select status::text, attempts, error from public.retrain_request").fetchone()
    assert row is not None
    return str(row[0]), int(str(row[1])), None if row[2] is None else str(row[2])


def backoff_over(conn: Connection, owner: Owner) -> None:
    """Lets the person's waiting message show now, as if its backoff had passed."""
    conn.execute(
        "select pgmq.set_vt('glucokit_retrain', msg_id, 0) from public.retrain_request where person_id = %s"
        " and status = 'queued'",
        (owner.person,),
    )
    conn.commit()


def seconds_until(moment: datetime) -> float:
    return (moment - datetime.now(UTC)).total_seconds()


def test_a_retrain_that_raised_is_retried_after_a_backoff(
    conn: Connection, owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_simulated_data(conn, owner)
    calls: list[int] = []

    def flaky(conn: Connection, store: ModelStore, person: Person) -> RetrainResult:
        calls.append(person.request.attempt)
        if len(calls) == 1:
            raise RuntimeError("the model store is down")
        return finish(conn, store, person)

    monkeypatch.setattr(retrain, "finish", flaky)
    store = LocalModelStore(tmp_path)
    first = retrain_job.run(conn, store, settings=RIDGE)
    assert first.failed == {owner.person: "RuntimeError('the model store is down')"}
    assert owner.person not in first.gave_up
    assert 290 < seconds_until(first.retrying[owner.person]) <= 300  # retry_delay_seconds
    status, attempts, error = request_row(conn, owner)
    assert (status, attempts) == ("queued", 1)
    assert error is not None
    assert error.startswith("attempt 1 failed: RuntimeError('the model store is down'); retried at ")
    with as_worker(conn, None):
        assert retrain_queue.metrics(conn).retrying >= 1
    # Hidden for its backoff: a job running meanwhile leaves it alone.
    assert owner.person not in {result.person_id for result in retrain_job.run(conn, store, settings=RIDGE).retrained}
    backoff_over(conn, owner)
    retried = retrain_job.run(conn, store, settings=RIDGE)
    assert [result.person_id for result in retried.retrained if result.person_id == owner.person] == [owner.person]
    assert calls == [1, 2]
    assert request_row(conn, owner) == ("done", 2, None)
    assert active_version(conn, owner) == "1.0.0"


def test_a_retrain_that_keeps_raising_is_given_up_with_its_reason(
    conn: Connection, owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    def broken(*args: Any) -> RetrainResult:
        raise RuntimeError("the model store is down")

    monkeypatch.setattr(retrain, "finish", broken)
    with as_worker(conn, None):
        retrain_queue.enqueue(conn, owner.person, Trigger.PERFORMANCE, "test")
    store = LocalModelStore(tmp_path)
    backoffs = []
    for _ in range(2):  # max_attempts is 3: two retries, each waiting twice as long as the one before
        report = retrain_job.run(conn, store)
        backoffs.append(seconds_until(report.retrying[owner.person]))
        backoff_over(conn, owner)
    assert 290 < backoffs[0] <= 300
    assert 590 < backoffs[1] <= 600
    last = retrain_job.run(conn, store)
    assert (last.failed[owner.person], owner.person in last.gave_up) == (
        "RuntimeError('the model store is down')",
        True,
    )
    assert owner.person not in last.retrying
    assert request_row(conn, owner) == (
        "failed", 3, "gave up after 3 attempts; the last one failed: RuntimeError('the model store is down')"
    )  # fmt: skip
    with as_worker(conn, None):
        assert retrain_queue.metrics(conn).failed_last_day >= 1
    archived = conn.execute(
        "select count(*) from pgmq.a_glucokit_retrain where message ->> 'person_id' = %s", (str(owner.person),)
    ).fetchone()
    assert archived == (1,)
    assert owner.person not in {result.person_id for result in retrain_job.run(conn, store).retrained}
    # The operator sees the dead letter with its reason.
    status = glucokit("queue", "status", "--limit", "1000", "--database-url", database_url)
    assert status.returncode == 0, status.stderr
    assert "given up (dead letters), newest first:" in status.stdout
    letter = next(line for line in status.stdout.splitlines() if str(owner.person) in line)
    assert letter.endswith(
        "(performance, 3 attempt(s)): gave up after 3 attempts; the last one failed: "
        "RuntimeError('the model store is down')"
    )
