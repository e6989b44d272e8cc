"""GDPR on the real database: consent that workers honour, the audit log, model removal, erasure and export."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
import psycopg
import pytest
from fhir.resources.R4B.bundle import Bundle

from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.errors import GlucokitError
from glucokit.fhir.ingest import Ingest
from glucokit.jobs import forecast_job, privacy_job, retrain_job
from glucokit.modelops import forecasts, retrain
from glucokit.modelops.model_store import LocalModelStore
from glucokit.privacy import rights as privacy
from glucokit.project import SIMULATED_DIR
from owners import Owner, ingest
from test_forecasts import RIDGE


def with_data(conn: Connection, owner: Owner) -> Owner:
    Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "child-001.json.gz")
    return owner


def requests(conn: Connection, owner: Owner) -> list[tuple[str, str]]:
    with as_user(conn, owner.user):
        return [
            (str(trigger), str(status))
            for trigger, status in conn.execute("select trigger::text, status::text from public.retrain_request")
        ]


def queued_messages(conn: Connection, person: UUID) -> int:
    row = conn.execute(
        "select (select count(*) from pgmq.q_glucokit_retrain where message ->> 'person_id' = %(p)s)"
        " + (select count(*) from pgmq.a_glucokit_retrain where message ->> 'person_id' = %(p)s)",
        {"p": str(person)},
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(str(row[0]))


def test_a_worker_reaches_a_person_only_for_a_purpose_they_consent_to(conn: Connection, owner: Owner) -> None:
    privacy.withdraw(conn, owner.user, owner.person, [Purpose.PATTERN_SEARCH])
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="has not consented to pattern_search"):  # noqa: SIM117
        with as_worker(conn, owner.person, Purpose.PATTERN_SEARCH, "daily patterns"):
            pass
    with as_worker(conn, owner.person, Purpose.TRAINING, "initial retrain"):
        assert conn.execute("select count(*) from public.person").fetchone() == (1,)
    # Deleting needs no consent, but something to delete: it is no way round consent.
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"nothing of person .* is to be deleted"),
        as_worker(conn, owner.person, Purpose.DELETION, "model removal"),
    ):
        pass
    privacy.withdraw(conn, owner.user, owner.person, [Purpose.TRAINING], delete_models=True)
    with as_worker(conn, owner.person, Purpose.DELETION, "model removal"):
        assert conn.execute("select count(*) from public.person").fetchone() == (1,)
    # Every scope needs a reason.
    with pytest.raises(GlucokitError, match="needs a purpose and a reason"), as_worker(conn, owner.person):
        pass
    with conn.transaction(force_rollback=True):
        conn.execute("set local role glucokit_worker")
        with pytest.raises(psycopg.errors.NullValueNotAllowed, match="purpose and a reason"):
            conn.execute("select private.begin_person_scope(%s, 'training', ' ')", (owner.person,))


def test_the_audit_log_says_which_worker_touched_the_person_when_and_why(
    conn: Connection, make_owner: Callable[[], Owner]
) -> None:
    owner, other = make_owner(), make_owner()
    conn.execute("set application_name = 'glucokit-retrain-job task 3/8'")
    conn.commit()
    with as_worker(conn, owner.person, Purpose.TRAINING, "new_data retrain, attempt 1"):
        # The same purpose again in the same transaction writes no second row; another purpose does.
        conn.execute("select private.begin_person_scope(%s, 'training', 'again')", (owner.person,))
        conn.execute(
            "select private.begin_person_scope(%s, 'forecasting', 'forecast after the retrain')", (owner.person,)
        )
    conn.execute("reset application_name")
    conn.commit()
    log = privacy.audit_log(conn, owner.user, owner.person)
    login = conn.execute("select session_user").fetchone()
    conn.commit()
    assert login is not None
    assert [(e.worker, e.application, e.purpose, e.reason) for e in log] == [
        (login[0], "glucokit-retrain-job task 3/8", "forecasting", "forecast after the retrain"),
        (login[0], "glucokit-retrain-job task 3/8", "training", "new_data retrain, attempt 1"),
    ]
    with pytest.raises(GlucokitError, match="not one of yours"):
        privacy.audit_log(conn, other.user, owner.person)
    with as_user(conn, other.user):
        assert conn.execute("select count(*) from public.audit_log").fetchone() == (0,)
    # A refused scope leaves no row (its transaction rolls back).
    privacy.withdraw(conn, owner.user, owner.person, [Purpose.TRAINING])
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(conn, owner.person, Purpose.TRAINING, "x"):
        pass
    assert len(privacy.audit_log(conn, owner.user, owner.person)) == 2


def test_consent_is_granted_and_withdrawn_per_purpose(conn: Connection, owner: Owner) -> None:
    withdrawn = privacy.withdraw(conn, owner.user, owner.person, [Purpose.FORECASTING])
    state = {c.purpose: c.in_force for c in withdrawn}
    assert state == {"training": True, "forecasting": False, "pattern_search": True}
    with pytest.raises(GlucokitError, match="no consent in force to forecasting"):
        privacy.withdraw(conn, owner.user, owner.person, [Purpose.FORECASTING])
    with pytest.raises(GlucokitError, match="delete_models goes with withdrawing consent to training alone"):
        privacy.withdraw(conn, owner.user, owner.person, [Purpose.PATTERN_SEARCH], delete_models=True)
    with pytest.raises(GlucokitError, match="deletion needs no consent"):
        privacy.grant(conn, owner.user, owner.person, [Purpose.DELETION])
    again = privacy.grant(conn, owner.user, owner.person, [Purpose.FORECASTING])
    assert all(c.in_force for c in again)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_user(conn, owner.user):
        conn.execute("delete from public.consent")


def test_withdrawing_training_consent_drops_waiting_retrains_and_queues_no_new_ones(
    conn: Connection, owner: Owner
) -> None:
    with_data(conn, owner)
    assert requests(conn, owner) == [("initial", "queued")]
    assert queued_messages(conn, owner.person) == 1
    privacy.withdraw(conn, owner.user, owner.person, [Purpose.TRAINING])
    assert requests(conn, owner) == []
    assert queued_messages(conn, owner.person) == 0
    # Neither the triggers nor the owner can queue one now.
    with as_worker(conn, None):
        queued = conn.execute("select private.enqueue_retrain(%s, 'scheduled', 'x')", (owner.person,)).fetchone()
    assert queued == (None,)
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="not consented to training"),
        as_user(conn, owner.user),
    ):
        conn.execute("select public.request_retrain(%s)", (owner.person,))
    assert requests(conn, owner) == []


def test_consent_withdrawn_while_training_leaves_nothing_and_ends_the_request(
    conn: Connection, database_url: str, owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_data(conn, owner)
    real = retrain.train

    def withdrawn_meanwhile(*args: Any, **kwargs: Any) -> Any:
        with psycopg.connect(database_url) as other:
            privacy.withdraw(other, owner.user, owner.person, [Purpose.TRAINING])
        return real(*args, **kwargs)

    monkeypatch.setattr(retrain, "train", withdrawn_meanwhile)
    report = retrain_job.run(conn, LocalModelStore(tmp_path), settings=RIDGE)
    assert report.retrained == []
    assert report.refused == {owner.person: "no consent to training"}
    assert report.failed == {}
    assert requests(conn, owner) == [("initial", "done")]
    assert queued_messages(conn, owner.person) == 0
    with as_user(conn, owner.user):
        assert conn.execute("select count(*) from public.ml_model").fetchone() == (0,)
        assert conn.execute("select count(*) from public.training_run").fetchone() == (0,)
    # Bytes the local store wrote have no row (invisible); the next retrain or the erasure sweeps them.
    assert conn.execute(
        "select count(*) from storage.objects where starts_with(name, %s)", (f"{owner.user}/{owner.person}/",)
    ).fetchone() == (0,)
    conn.commit()


def trained(conn: Connection, owner: Owner, store: LocalModelStore) -> None:
    with_data(conn, owner)
    report = retrain_job.run(conn, store, settings=RIDGE)
    assert [r.person_id for r in report.retrained] == [owner.person]
    assert report.forecasts
    assert report.forecasts[0].points > 0


def test_without_consent_to_forecasting_no_forecast_is_written(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    privacy.withdraw(conn, owner.user, owner.person, [Purpose.FORECASTING])
    with_data(conn, owner)
    report = retrain_job.run(conn, LocalModelStore(tmp_path), settings=RIDGE)
    assert [r.person_id for r in report.retrained] == [owner.person]
    assert (report.forecasts, report.forecast_failed) == ([], {})
    assert owner.person not in forecast_job.due_persons(conn, None)
    privacy.grant(conn, owner.user, owner.person, [Purpose.FORECASTING])
    assert owner.person in forecast_job.due_persons(conn, None)
    privacy.withdraw(conn, owner.user, owner.person, [Purpose.FORECASTING])
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="not consented to forecasting"):
        forecasts.write_forecasts(conn, LocalModelStore(tmp_path), owner.person)


@pytest.fixture
def trained_pair(
    conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path
) -> tuple[Owner, Owner, LocalModelStore]:
    """Two persons with a trained model each: the one a test strips or erases, and a bystander who keeps everything."""
    owner, bystander = make_owner(), make_owner()
    store = LocalModelStore(tmp_path)
    trained(conn, owner, store)
    trained(conn, bystander, store)
    return owner, bystander, store


def test_withdrawal_with_delete_models_removes_models_files_and_forecasts(
    conn: Connection, trained_pair: tuple[Owner, Owner, LocalModelStore], tmp_path: Path
) -> None:
    owner, bystander, store = trained_pair
    privacy.withdraw(conn, owner.user, owner.person, [Purpose.TRAINING], delete_models=True)
    report = privacy_job.run(conn, store)
    assert (report.models_removed, report.failed) == ({owner.person: 1}, {})
    with as_user(conn, owner.user):
        for table in ("ml_model", "forecast", "prediction", "prediction_source", "forecast_outcome"):
            assert conn.execute(f"select count(*) from public.{table}".encode()).fetchone() == (0,), table
        assert conn.execute("select count(*) from storage.objects").fetchone() == (0,)
        assert conn.execute("select count(*) from public.training_run").fetchone() == (1,)
    assert not [path for path in (tmp_path / "models" / str(owner.user)).rglob("*") if path.is_file()]
    with as_user(conn, bystander.user):
        assert conn.execute("select count(*) from public.ml_model").fetchone() == (1,)
    assert privacy_job.pending(conn) == []


def every_mention(conn: Connection, person: UUID) -> list[str]:
    """Every table, in every schema, with a row whose text mentions the person's id."""
    tables = conn.execute(
        "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')"
    ).fetchall()
    found = []
    for (table,) in tables:
        row = conn.execute(
            f"select count(*) from {table} t where t::text like %s".encode(),
            (f"%{person}%",),
        ).fetchone()
        if row and row[0]:
            found.append(str(table))
    conn.commit()
    return found


def test_erasure_leaves_no_row_no_file_and_no_message_with_the_persons_id(
    conn: Connection, trained_pair: tuple[Owner, Owner, LocalModelStore], tmp_path: Path
) -> None:
    owner, bystander, store = trained_pair
    # Something of every kind: feedback, a rejected entry, a waiting request with its message, an audit trail.
    with as_user(conn, owner.user):
        conn.execute(
            "insert into public.forecast_feedback (prediction_id, person_id, rating)"
            " select id, person_id, 'up' from public.prediction limit 1"
        )
        conn.execute("select public.request_retrain(%s)", (owner.person,))
    ingest(conn, owner, {"resourceType": "Observation", "status": "final"})
    assert queued_messages(conn, owner.person) == 1
    before = every_mention(conn, owner.person)
    assert {
        "pgmq.q_glucokit_retrain", "private.retrain_state", "public.audit_log", "public.consent",
        "public.forecast_feedback", "public.ml_model", "public.prediction", "public.quarantined_entry",
        "public.retrain_request", "storage.objects",
    } <= set(before)  # fmt: skip
    assert any(table.startswith("partitions.observation_") for table in before)

    privacy.delete_person(conn, owner.user, owner.person)
    assert sorted(every_mention(conn, owner.person)) == ["private.erasure", "storage.objects"]
    report = privacy_job.run(conn, store)
    assert report.failed == {}
    # model.safetensors, metadata.json, training_log.txt and the model card: card.json, card.en.md, card.de.md
    assert len(report.erased[owner.person]) == 6
    assert every_mention(conn, owner.person) == []
    assert not [path for path in tmp_path.rglob("*") if str(owner.person) in str(path) and path.is_file()]
    # The bystander keeps everything.
    assert "public.ml_model" in every_mention(conn, bystander.person)


def test_export_holds_everything_about_the_person(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    trained(conn, owner, store)
    report = privacy.export_everything(conn, store, owner.user, owner.person, tmp_path / "export")
    bundle = orjson.loads((tmp_path / "export" / "bundle.json").read_bytes())
    Bundle.model_validate(bundle)
    kinds = {entry["resource"]["resourceType"] for entry in bundle["entry"]}
    assert kinds == {"Observation", "Provenance"}
    assert report.entries == len(bundle["entry"])
    records = orjson.loads((tmp_path / "export" / "records.json").read_bytes())
    assert records["format"] == privacy.RECORDS_FORMAT
    assert set(records["tables"]) == set(privacy.person_tables(conn))
    conn.commit()
    for table in ("person", "observation", "ml_model", "training_run", "prediction", "consent", "audit_log"):
        assert records["tables"][table], table
    (metadata,) = records["model_metadata"].values()
    assert metadata["version"] == "1.0.0"
    (model,) = records["tables"]["ml_model"]
    assert model["card"]["version"] == "1.0.0"  # the model card's facts, with the row
    assert report.models == 1


def cli(database_url: str, model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "glucokit.cli.main", *args, "--database-url", database_url],
        capture_output=True, text=True, timeout=300, check=False,
        env=environment | {"GLUCOKIT_MODEL_DIR": str(model_dir)},
    )  # fmt: skip


def test_the_privacy_commands(conn: Connection, database_url: str, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path / "store")
    trained(conn, owner, store)
    person = str(owner.person)
    shown = cli(database_url, store.root, "privacy", "consent", "--person", person)
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[2] for line in shown.stdout.splitlines()] == ["training", "forecasting", "pattern_search"]
    withdrawn = cli(database_url, store.root, "privacy", "consent", "--person", person, "--withdraw", "forecasting")
    assert f"person {person}: forecasting     withdrawn " in withdrawn.stdout
    bad = cli(database_url, store.root, "privacy", "consent", "--person", person, "--grant", "deletion")
    assert bad.returncode == 2
    assert "invalid choice: 'deletion'" in bad.stderr

    audit = cli(database_url, store.root, "privacy", "audit", "--person", person)
    assert audit.returncode == 0, audit.stderr
    assert "training        " in audit.stdout
    assert "initial retrain, attempt 1" in audit.stdout

    exported = cli(database_url, store.root, "privacy", "export", "--person", person, "--out", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "out" / "bundle.json").is_file()
    assert "1 model metadata files" in exported.stdout

    unconfirmed = cli(database_url, store.root, "privacy", "erase", "--person", person)
    assert (unconfirmed.returncode, unconfirmed.stderr.strip()) == (
        1,
        f"glucokit: error: erasing person {person} removes everything about them for good: add --yes",
    )
    erased = cli(database_url, store.root, "privacy", "erase", "--person", person, "--yes")
    assert erased.returncode == 0, erased.stderr
    job = cli(database_url, store.root, "privacy", "run")
    assert job.returncode == 0, job.stderr
    assert f"{person}: erased (6 files)" in job.stdout  # the version's 3 files and its model card's 3
    assert every_mention(conn, owner.person) == []


def test_failures_at_the_head_of_the_list_hide_no_work_behind_them(
    conn: Connection, make_owner: Callable[[], Owner], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed erasure stays pending; a page of them must not end the run before the work after them."""
    stuck, waiting = make_owner(), make_owner()
    for owner in (stuck, waiting):  # oldest first: the stuck one heads the list
        privacy.delete_person(conn, owner.user, owner.person)
    real = privacy.erase_files

    def erase_files(db: Connection, store: Any, person: UUID) -> list[str]:
        if person == stuck.person:
            raise RuntimeError("the store refuses")
        return real(db, store, person)

    monkeypatch.setattr(privacy, "erase_files", erase_files)
    # Pages of one row: the module's page size and pending()'s default alike.
    monkeypatch.setattr(privacy_job, "PAGE", 1)
    monkeypatch.setattr(privacy_job.pending, "__defaults__", (1,))
    report = privacy_job.run(conn, LocalModelStore(tmp_path))
    assert set(report.failed) == {stuck.person}
    assert waiting.person in report.erased
