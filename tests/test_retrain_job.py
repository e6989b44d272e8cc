"""The retrain job against the real queue: drains, shards, stops on request, and the Cloud Run entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import LiteralString

from glucokit import registry, retrain_job
from glucokit.ingest import Ingest
from glucokit.model_store import LocalModelStore
from glucokit.project import PROJECT_DIR, SIMULATED_DIR
from glucokit.retrain_job import Shard
from glucokit.sessions import Connection, Purpose, as_user, as_worker
from owners import Owner


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
    ridge = retrain_job.training_settings("ridge")
    mine_report = retrain_job.run(conn, LocalModelStore(tmp_path), shard=Shard(mine, 2), settings=ridge)
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
    """A real ``kill -9`` of the job process while it trains, then the retry after the claim's lease."""
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
    # Training: the person's transaction has written its training run (it holds that table's lock) and waits on Python.
    training = (
        sessions + " and state = 'idle in transaction' and pid in"
        " (select pid from pg_locks where relation = 'public.training_run'::regclass and mode = 'RowExclusiveLock')"
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
