"""Model artifacts in the local store: safetensors round trip, the bucket's policies deciding every access, sweeping."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import torch

from fhir_samples import bundle, cgm
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.errors import GlucokitError
from glucokit.modelops import registry
from glucokit.modelops.model_store import (
    BUCKET,
    LOG_FILE,
    METADATA_FILE,
    WEIGHTS_FILE,
    LocalModelStore,
    ModelArtifacts,
    load_model,
    model_folder,
    person_folder,
    save_model,
    sha256,
    unregistered_folders,
)
from glucokit.modelops.retrain import retrain
from owners import Owner, ingest
from test_registry import register

ARTIFACTS = ModelArtifacts(
    weights={"layer.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "layer.bias": torch.zeros(3)},
    metadata={"algorithm": "ridge", "horizons_min": [5, 10]},
    log="epoch 1: loss 1.0\n",
)


def folder_of(owner: Owner, version: str = "1.0.0") -> str:
    return model_folder(owner.user, owner.person, version)


def test_a_model_round_trips_through_the_store(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        digest = save_model(store, conn, folder_of(owner), ARTIFACTS)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        loaded = load_model(store, conn, folder_of(owner), digest)
    assert loaded.metadata == ARTIFACTS.metadata
    assert loaded.log == ARTIFACTS.log
    assert set(loaded.weights) == set(ARTIFACTS.weights)
    for name, tensor in ARTIFACTS.weights.items():
        assert torch.equal(loaded.weights[name], tensor)
    assert digest == sha256(ARTIFACTS.files()[WEIGHTS_FILE])
    assert sorted(path.name for path in (tmp_path / "models" / folder_of(owner)).iterdir()) == sorted(
        [LOG_FILE, METADATA_FILE, WEIGHTS_FILE]
    )


def test_the_owner_reads_their_model_files_and_another_user_does_not(
    conn: Connection, owner: Owner, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        save_model(store, conn, folder_of(owner), ARTIFACTS)
    name = folder_of(owner) + METADATA_FILE
    with as_user(conn, owner.user):
        assert store.get(conn, name) == ARTIFACTS.files()[METADATA_FILE]
    other = make_owner()
    with as_user(conn, other.user), pytest.raises(GlucokitError, match=r"no model file .* that this role may read"):
        store.get(conn, name)


def test_a_worker_cannot_write_outside_its_person_and_leaves_no_file(
    conn: Connection, owner: Owner, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    store = LocalModelStore(tmp_path)
    other = make_owner()
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        save_model(store, conn, folder_of(other), ARTIFACTS)
    assert not (tmp_path / "models" / str(other.user)).exists()


def test_weights_that_are_not_the_registered_ones_are_refused(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        save_model(store, conn, folder_of(owner), ARTIFACTS)
    with (
        as_worker(conn, owner.person, Purpose.TRAINING, "test"),
        pytest.raises(GlucokitError, match="are not the ones registered"),
    ):
        load_model(store, conn, folder_of(owner), "0" * 64)
    (tmp_path / "models" / folder_of(owner) / WEIGHTS_FILE).write_bytes(b"tampered")
    with (
        as_worker(conn, owner.person, Purpose.TRAINING, "test"),
        pytest.raises(GlucokitError, match="does not match the hash recorded"),
    ):
        store.get(conn, folder_of(owner) + WEIGHTS_FILE)


def test_files_of_a_transaction_that_never_committed_are_swept(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        kept = register(conn, owner, store)
    crashed = folder_of(owner, "1.1.0")

    def crash_after_upload() -> None:
        with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
            save_model(store, conn, crashed, ARTIFACTS)
            raise RuntimeError("killed after upload, before the transaction committed")

    with pytest.raises(RuntimeError):
        crash_after_upload()
    assert (tmp_path / "models" / crashed / WEIGHTS_FILE).exists()
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        swept = store.sweep(conn, person_folder(owner.user, owner.person))
    assert swept == sorted(crashed + name for name in (LOG_FILE, METADATA_FILE, WEIGHTS_FILE))
    assert not (tmp_path / "models" / crashed / WEIGHTS_FILE).exists()
    assert kept.storage_path == folder_of(owner, "1.0.0")
    assert (tmp_path / "models" / folder_of(owner, "1.0.0") / WEIGHTS_FILE).exists()


def test_files_stored_but_never_registered_are_swept_and_registered_versions_kept(
    conn: Connection, owner: Owner, make_owner: Callable[[], Owner], tmp_path: Path
) -> None:
    """What a Supabase upload leaves when the worker dies before registering: committed objects, no model version."""
    store = LocalModelStore(tmp_path)
    other = make_owner()
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        kept = register(conn, owner, store)
    stranded = folder_of(owner, "1.1.0")
    for person, folder in ((owner, stranded), (other, folder_of(other, "1.0.0"))):
        with as_worker(conn, person.person, Purpose.TRAINING, "test"):
            save_model(store, conn, folder, ARTIFACTS)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        assert unregistered_folders(conn, person_folder(owner.user, owner.person)) == [stranded]
        swept = store.sweep(conn, person_folder(owner.user, owner.person))
        assert swept == sorted(stranded + name for name in (LOG_FILE, METADATA_FILE, WEIGHTS_FILE))
        assert unregistered_folders(conn, person_folder(owner.user, owner.person)) == []
        assert kept.storage_path is not None
        assert kept.artifact_sha256 is not None
        load_model(store, conn, kept.storage_path, kept.artifact_sha256)
    assert list((tmp_path / "models" / stranded).iterdir()) == []
    with as_worker(
        conn, other.person, Purpose.TRAINING, "test"
    ):  # another person's unregistered files are not this sweep's business
        assert unregistered_folders(conn, person_folder(other.user, other.person)) == [folder_of(other, "1.0.0")]
    assert (tmp_path / "models" / folder_of(other, "1.0.0") / WEIGHTS_FILE).exists()


def test_a_retrain_sweeps_what_a_crashed_retrain_left_and_keeps_registered_versions(
    conn: Connection, owner: Owner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(conn, owner, bundle(*(cgm(n, 100 + (n % 7)) for n in range(80))))
    store = LocalModelStore(tmp_path)
    assert retrain(conn, store, owner.person, "initial").version == "1.0.0"

    def killed(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("killed after upload, before registration")

    with monkeypatch.context() as patch:
        patch.setattr(registry, "register", killed)
        with pytest.raises(RuntimeError, match="killed"):
            retrain(conn, store, owner.person, "scheduled")
    crashed = folder_of(owner, "1.1.0")
    assert (tmp_path / "models" / crashed / WEIGHTS_FILE).exists()  # its rows rolled back with the retrain
    stranded = folder_of(owner, "2.0.0")  # what Supabase Storage keeps of such a crash: committed objects
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        save_model(store, conn, stranded, ARTIFACTS)

    assert retrain(conn, store, owner.person, "scheduled").version == "1.1.0"
    assert not (tmp_path / "models" / stranded / WEIGHTS_FILE).exists()
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        assert conn.execute(query("storage_folder_objects"), {"bucket": BUCKET, "folder": stranded}).fetchall() == []
        assert unregistered_folders(conn, person_folder(owner.user, owner.person)) == []
        models = registry.versions(conn, owner.person)
        assert [model.version for model in models] == ["1.0.0", "1.1.0"]
        for model in models:
            assert model.storage_path is not None
            assert model.artifact_sha256 is not None
            load_model(store, conn, model.storage_path, model.artifact_sha256)


def test_removing_a_version_deletes_its_rows_and_files(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        save_model(store, conn, folder_of(owner), ARTIFACTS)
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        removed = store.remove(conn, folder_of(owner))
    assert removed == sorted(folder_of(owner) + name for name in (LOG_FILE, METADATA_FILE, WEIGHTS_FILE))
    assert list((tmp_path / "models" / folder_of(owner)).iterdir()) == []
