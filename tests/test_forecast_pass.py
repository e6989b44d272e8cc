"""The forecast pass's own costs: loaded forecasters kept per version, and each task's shard listed by the database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import psycopg
import pytest

from fhir_samples import bundle, cgm
from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.fhir.ingest import Ingest
from glucokit.forecast import TrainingSettings
from glucokit.jobs import forecast_job
from glucokit.jobs.runner import Shard
from glucokit.modelops import monitoring, registry
from glucokit.modelops.model_store import LoadedModels, LocalModelStore, load_state
from glucokit.modelops.retrain import retrain
from glucokit.privacy import rights as privacy
from glucokit.project import SIMULATED_DIR
from owners import Owner, ingest

RIDGE = TrainingSettings(families=("ridge",))


class _CountingStore(LocalModelStore):
    """The local store, counting the files read back."""

    reads: int = 0

    def get(self, conn: Connection, name: str) -> bytes:
        self.reads += 1
        return super().get(conn, name)


def test_loaded_models_keep_the_most_recently_used_within_their_bytes() -> None:
    kept = LoadedModels(limit_bytes=100)
    states = [object() for _ in range(4)]
    kept.keep(("a/", "1"), states[0], 40)  # type: ignore[arg-type]
    kept.keep(("b/", "2"), states[1], 40)  # type: ignore[arg-type]
    assert kept.get(("a/", "1")) is states[0]  # now the most recently used
    kept.keep(("c/", "3"), states[2], 40)  # type: ignore[arg-type]
    assert (len(kept), kept.weight_bytes) == (2, 80)
    assert kept.get(("b/", "2")) is None  # the least recently used went
    assert kept.get(("a/", "1")) is states[0]
    assert kept.get(("a/", "other hash")) is None
    kept.keep(("d/", "4"), states[3], 101)  # type: ignore[arg-type]
    assert kept.get(("d/", "4")) is None  # larger than the whole limit: not kept
    assert kept.weight_bytes <= kept.limit_bytes


def test_a_version_is_loaded_once_and_never_serves_another_person_or_version(
    conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    store = _CountingStore(tmp_path)
    owners = [make_owner() for _ in range(2)]
    for owner in owners:
        Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "adult-001.json.gz")
        assert retrain(conn, store, owner.person, "initial", settings=RIDGE).activated
    first, second = owners
    with as_worker(conn, first.person, Purpose.FORECASTING, "test"):
        model = registry.active(conn, first.person)
        assert model is not None
        store.reads = 0
        state = load_state(conn, store, model)
        assert store.reads == 2  # weights and metadata
        assert load_state(conn, store, model) is state
        assert store.reads == 2  # the second pass reads no file
    with as_worker(conn, second.person, Purpose.FORECASTING, "test"):
        theirs = registry.active(conn, second.person)
        assert theirs is not None
        assert load_state(conn, store, theirs) is not state  # same data, same code: still their own files
        assert store.reads == 4
    retrain(conn, store, first.person, "scheduled", settings=RIDGE)
    with as_worker(conn, first.person, Purpose.FORECASTING, "test"):
        newer = [version for version in registry.versions(conn, first.person) if version.id != model.id]
        assert len(newer) == 1
        assert load_state(conn, store, newer[0]) is not state  # a new version is loaded from its files
        assert store.reads == 6


def _active_model(conn: Connection, owner: Owner) -> None:
    """An active model for the owner's person, trained before their readings (so they are due a forecast)."""
    conn.execute(
        "insert into public.consent (person_id, purpose) values (%s, 'forecasting') on conflict do nothing",
        (owner.person,),
    )
    conn.execute(
        "insert into public.ml_model (person_id, version, algorithm, data_from, data_to, stage)"
        " values (%s, '1.0.0', 'ridge', '2026-09-01', '2026-09-30', 'active')",
        (owner.person,),
    )
    conn.commit()


def test_each_due_person_is_in_exactly_one_tasks_list(conn: Connection, make_owner: Callable[[], Owner]) -> None:
    owners = [make_owner() for _ in range(9)]
    for owner in owners:
        _active_model(conn, owner)
        ingest(conn, owner, bundle(cgm(0)))
    mine = {owner.person for owner in owners}
    everyone = [person for person in forecast_job.due_persons(conn, None, limit=10_000) if person in mine]
    assert sorted(everyone) == sorted(mine)
    for count in range(1, 5):
        listed: list[UUID] = []
        for index in range(count):
            shard = Shard(index, count)
            page = [p for p in forecast_job.due_persons(conn, None, limit=10_000, shard=shard) if p in mine]
            assert all(shard.owns(person) for person in page)
            listed += page
        assert sorted(listed) == sorted(mine)  # each in exactly one task's list
    # Paging within a shard goes on after the last of the page before.
    shard = Shard(0, 2)
    pages, after = [], None
    while page := forecast_job.due_persons(conn, after, limit=1, shard=shard):
        pages += page
        after = page[-1]
    assert pages == sorted(pages)
    assert {p for p in pages if p in mine} == {p for p in mine if shard.owns(p)}


def test_a_task_index_outside_its_count_is_refused(conn: Connection) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"task index 2 is not in 0\.\.1 of 2 tasks"):
        conn.execute("select private.forecast_due_persons(null, 10, 2, 2)")
    conn.rollback()


def test_a_person_pass_is_one_scoped_transaction_and_a_database_error_in_the_check_spares_the_forecast(
    conn: Connection, owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "adult-001.json.gz")
    store = LocalModelStore(tmp_path)
    assert retrain(conn, store, owner.person, "initial", settings=RIDGE).activated
    audited = privacy.audit_log(conn, owner.user, owner.person)

    def failing(conn: Connection, *args: object) -> object:
        # A real error inside the person's transaction: without the check's savepoint it would abort the write too.
        return conn.execute("select 1 / 0")

    monkeypatch.setattr(monitoring, "record_outcomes", failing)
    report = forecast_job.run(conn, store)
    assert [w.points for w in report.written if w.person_id == owner.person] == [12]
    assert report.monitor_failed[owner.person].startswith("DivisionByZero")
    assert owner.person not in forecast_job.due_persons(conn, None)
    log = privacy.audit_log(conn, owner.user, owner.person)
    # One consent check and one audit row for the check and the write together.
    assert [(e.purpose, e.reason) for e in log[: len(log) - len(audited)]] == [("forecasting", forecast_job.REASON)]
