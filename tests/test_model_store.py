"""Model artifacts in the local store: safetensors round trip, and the bucket's policies deciding every access."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import torch

from glucokit.errors import GlucokitError
from glucokit.model_store import (
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
)
from glucokit.sessions import Connection, as_user, as_worker
from owners import Owner

ARTIFACTS = ModelArtifacts(
    weights={"layer.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "layer.bias": torch.zeros(3)},
    metadata={"algorithm": "ridge", "horizons_min": [5, 10]},
    log="epoch 1: loss 1.0\n",
)


def folder_of(owner: Owner, version: str = "1.0.0") -> str:
    return model_folder(owner.user, owner.person, version)


def test_a_model_round_trips_through_the_store(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person):
        digest = save_model(store, conn, folder_of(owner), ARTIFACTS)
    with as_worker(conn, owner.person):
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
    with as_worker(conn, owner.person):
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
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_worker(conn, owner.person):
        save_model(store, conn, folder_of(other), ARTIFACTS)
    assert not (tmp_path / "models" / str(other.user)).exists()


def test_weights_that_are_not_the_registered_ones_are_refused(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person):
        save_model(store, conn, folder_of(owner), ARTIFACTS)
    with as_worker(conn, owner.person), pytest.raises(GlucokitError, match="are not the ones registered"):
        load_model(store, conn, folder_of(owner), "0" * 64)
    (tmp_path / "models" / folder_of(owner) / WEIGHTS_FILE).write_bytes(b"tampered")
    with as_worker(conn, owner.person), pytest.raises(GlucokitError, match="does not match the hash recorded"):
        store.get(conn, folder_of(owner) + WEIGHTS_FILE)


def test_files_of_a_transaction_that_never_committed_are_swept(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person):
        save_model(store, conn, folder_of(owner, "1.0.0"), ARTIFACTS)
    crashed = folder_of(owner, "1.1.0")

    def crash_after_upload() -> None:
        with as_worker(conn, owner.person):
            save_model(store, conn, crashed, ARTIFACTS)
            raise RuntimeError("killed after upload, before the transaction committed")

    with pytest.raises(RuntimeError):
        crash_after_upload()
    assert (tmp_path / "models" / crashed / WEIGHTS_FILE).exists()
    with as_worker(conn, owner.person):
        swept = store.sweep(conn, person_folder(owner.user, owner.person))
    assert swept == sorted(crashed + name for name in (LOG_FILE, METADATA_FILE, WEIGHTS_FILE))
    assert (tmp_path / "models" / folder_of(owner, "1.0.0") / WEIGHTS_FILE).exists()


def test_removing_a_version_deletes_its_rows_and_files(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    store = LocalModelStore(tmp_path)
    with as_worker(conn, owner.person):
        save_model(store, conn, folder_of(owner), ARTIFACTS)
    with as_worker(conn, owner.person):
        removed = store.remove(conn, folder_of(owner))
    assert removed == sorted(folder_of(owner) + name for name in (LOG_FILE, METADATA_FILE, WEIGHTS_FILE))
    assert list((tmp_path / "models" / folder_of(owner)).iterdir()) == []
