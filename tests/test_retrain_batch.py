"""The retrain job in batches against the real queue: a batch gives each person what one at a time gives them, a
person failing fails alone, SIGTERM finishes the batch in hand, and a claim taken over is left to its new holder."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import pytest

from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.forecast import TrainingSettings
from glucokit.jobs import retrain_job
from glucokit.modelops import registry, retrain, retrain_queue
from glucokit.modelops.model_store import LocalModelStore, ModelStore, load_state
from glucokit.modelops.retrain import Person, RetrainResult
from glucokit.modelops.retrain_queue import Trigger
from glucokit.privacy import rights as privacy
from owners import Owner
from test_forecasts import RIDGE
from test_retrain_job import request_status, with_simulated_data

NETWORK = TrainingSettings(families=("network",))
BUNDLES = ("child-001.json.gz", "adult-001.json.gz", "adolescent-001.json.gz")


def trained_persons(conn: Connection, make_owner: Callable[[], Owner], count: int) -> list[Owner]:
    """``count`` owners whose persons have 14 simulated days each and a queued initial retrain."""
    return [with_simulated_data(conn, make_owner(), BUNDLES[index % len(BUNDLES)]) for index in range(count)]


def version_facts(conn: Connection, store: ModelStore, owner: Owner, version: str) -> tuple[dict[str, float], str]:
    """A registered version's metrics and the SHA-256 of its weights (every tensor's bytes, by name)."""
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        model = next(model for model in registry.versions(conn, owner.person) if model.version == version)
        state = load_state(conn, store, model)
    digest = hashlib.sha256()
    for name, tensor in sorted(state.tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return dict(model.metrics), digest.hexdigest()


def enqueue(conn: Connection, owners: Sequence[Owner]) -> None:
    with as_worker(conn, None):
        for owner in owners:
            retrain_queue.enqueue(conn, owner.person, Trigger.SCHEDULED, "test")


def test_a_batch_gives_each_person_what_one_at_a_time_gives_them(
    conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    owners = trained_persons(conn, make_owner, 3)
    store = LocalModelStore(tmp_path)
    alone = retrain_job.run(conn, store, settings=NETWORK, batch_size=1)
    assert alone.failed == {}
    enqueue(conn, owners)
    batched = retrain_job.run(conn, store, settings=NETWORK, batch_size=3)
    assert batched.failed == {}
    for owner in owners:
        assert [r.version for r in alone.retrained if r.person_id == owner.person] == ["1.0.0"]
        assert [r.version for r in batched.retrained if r.person_id == owner.person] == ["1.1.0"]
        first, second = version_facts(conn, store, owner, "1.0.0"), version_facts(conn, store, owner, "1.1.0")
        assert first[0]["rmse_30"] > 0
        assert second == first  # the same metrics and the same weights, to the bit
        assert request_status(conn, owner) == ["done", "done"]


def test_a_person_failing_leaves_the_others_of_the_batch(
    conn: Connection,
    make_owner: Callable[[], Owner],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
) -> None:
    fine, broken, withdrawn = trained_persons(conn, make_owner, 3)
    real_train, real_finish = retrain.train, retrain.finish

    def withdrawing(persons: Sequence[Person], device: str | None = None) -> None:
        with psycopg.connect(database_url) as other:
            privacy.withdraw(other, withdrawn.user, withdrawn.person, [Purpose.TRAINING])
        real_train(persons, device)

    def failing(conn: Connection, store: ModelStore, person: Person) -> RetrainResult:
        if person.person_id == broken.person:
            raise RuntimeError("the model store is down")
        return real_finish(conn, store, person)

    monkeypatch.setattr(retrain, "train", withdrawing)
    monkeypatch.setattr(retrain, "finish", failing)
    report = retrain_job.run(conn, LocalModelStore(tmp_path), settings=RIDGE, batch_size=3)
    assert [r.person_id for r in report.retrained if r.person_id in {fine.person, broken.person}] == [fine.person]
    assert report.failed == {broken.person: "RuntimeError('the model store is down')"}
    assert broken.person in report.retrying
    assert report.refused == {withdrawn.person: "no consent to training"}
    assert request_status(conn, fine) == ["done"]
    assert request_status(conn, broken) == ["queued"]  # waits for its backoff


def test_asked_to_stop_a_task_finishes_the_batch_in_hand_and_claims_no_other(
    conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owners = trained_persons(conn, make_owner, 3)
    stop = threading.Event()
    real_train = retrain.train

    def signalled(persons: Sequence[Person], device: str | None = None) -> None:
        stop.set()  # SIGTERM while the batch trains
        real_train(persons, device)

    monkeypatch.setattr(retrain, "train", signalled)
    report = retrain_job.run(conn, LocalModelStore(tmp_path), settings=RIDGE, batch_size=2, stop=stop)
    assert (len(report.retrained), report.failed, report.stopped) == (2, {}, "asked to stop")
    statuses = [status for owner in owners for status in request_status(conn, owner)]
    assert sorted(statuses)[-1] != "running"  # nothing is left claimed
    assert statuses.count("queued") >= 1


def test_a_claim_taken_over_during_the_batch_is_left_to_its_new_holder(
    conn: Connection,
    make_owner: Callable[[], Owner],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
) -> None:
    kept, lost = trained_persons(conn, make_owner, 2)
    real_train = retrain.train

    def overtaken(persons: Sequence[Person], device: str | None = None) -> None:
        # The lease of one claim runs out while the batch trains, and another worker claims the request.
        with psycopg.connect(database_url) as other:
            (msg_id,) = other.execute(
                "update public.retrain_request set lease_expires_at = clock_timestamp() - interval '1 s'"
                " where person_id = %s and status = 'running' returning msg_id",
                (lost.person,),
            ).fetchone() or (None,)
            assert isinstance(msg_id, int)
            other.commit()
            with as_worker(other, None):
                assert retrain_queue.claim(other, msg_id).claimed
        real_train(persons, device)

    monkeypatch.setattr(retrain, "train", overtaken)
    store = LocalModelStore(tmp_path)
    report = retrain_job.run(conn, store, settings=RIDGE, batch_size=2)
    assert {r.person_id for r in report.retrained} & {kept.person, lost.person} == {kept.person}
    assert report.failed == {}
    assert request_status(conn, kept) == ["done"]
    assert request_status(conn, lost) == ["running"]  # under the new claim, attempt 2
    with as_worker(conn, lost.person, Purpose.TRAINING, "test"):
        assert registry.versions(conn, lost.person) == []
