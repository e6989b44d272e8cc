"""The retrain job against the real queue: drains, shards, stops on request, and the Cloud Run entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from glucokit import registry, retrain_job
from glucokit.ingest import Ingest
from glucokit.model_store import LocalModelStore
from glucokit.project import PROJECT_DIR, SIMULATED_DIR
from glucokit.retrain_job import Shard
from glucokit.sessions import Connection, as_user, as_worker
from owners import Owner


def with_simulated_data(conn: Connection, owner: Owner, bundle: str = "child-001.json.gz") -> Owner:
    """Ingesting 14 simulated days queues the person's initial retrain (the new-data trigger)."""
    Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / bundle)
    return owner


def active_version(conn: Connection, owner: Owner) -> str | None:
    with as_worker(conn, owner.person):
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
    retrain_job.run(conn, LocalModelStore(tmp_path), shard=Shard(mine, 2))
    assert active_version(conn, owner) == "1.0.0"


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
