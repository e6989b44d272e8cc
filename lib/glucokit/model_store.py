"""Model artifacts in the private ``models`` bucket: where they live, what they hold, how they are stored.

A model version is a folder ``{owner_id}/{person_id}/{model_type}/v{version}/``
holding ``model.safetensors`` (the weights; never pickle), ``metadata.json``
and ``training_log.txt``. Every object is a row of ``storage.objects``, so the
bucket's policies decide who may read or write it: workers write only into the
folder of the person their transaction is scoped to, users read only under
their own first folder.

``LocalModelStore`` keeps the bytes under a data directory and the rows in the
database's ``storage.objects`` (the same policies hold locally as on Supabase).
It works inside the caller's transaction: the row is written first, under the
policies, and the bytes only once the database has accepted it, so a refused
write leaves no file. Bytes whose row never committed are invisible (every read
starts from the row) and ``sweep`` removes them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from uuid import UUID

import orjson
import torch
from psycopg.types.json import Jsonb
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from glucokit.errors import GlucokitError
from glucokit.queries import query
from glucokit.sessions import Connection

BUCKET: Final = "models"
MODEL_TYPE: Final = "glucose-forecast"
WEIGHTS_FILE: Final = "model.safetensors"
METADATA_FILE: Final = "metadata.json"
LOG_FILE: Final = "training_log.txt"
CONTENT_TYPES: Final = {
    WEIGHTS_FILE: "application/octet-stream",
    METADATA_FILE: "application/json",
    LOG_FILE: "text/plain",
}


def person_folder(owner_id: UUID, person_id: UUID) -> str:
    """The folder of all of a person's models (the database's private.worker_storage_prefix)."""
    return f"{owner_id}/{person_id}/"


def model_folder(owner_id: UUID, person_id: UUID, version: str, model_type: str = MODEL_TYPE) -> str:
    """The folder of one model version (the database checks the same shape: private.is_model_folder)."""
    return f"{person_folder(owner_id, person_id)}{model_type}/v{version}/"


@dataclass(frozen=True)
class ModelArtifacts:
    """What a model version stores: its weights, its metadata and the log of its training."""

    weights: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    log: str

    def files(self) -> dict[str, bytes]:
        return {
            WEIGHTS_FILE: save_tensors({name: tensor.contiguous() for name, tensor in self.weights.items()}),
            METADATA_FILE: orjson.dumps(self.metadata, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2),
            LOG_FILE: self.log.encode(),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> ModelArtifacts:
        return cls(
            weights=load_tensors(files[WEIGHTS_FILE]),
            metadata=orjson.loads(files[METADATA_FILE]),
            log=files[LOG_FILE].decode(),
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelStore(Protocol):
    """Object storage for the ``models`` bucket, used inside a transaction of ``conn``."""

    def put(self, conn: Connection, name: str, data: bytes, content_type: str) -> None: ...

    def get(self, conn: Connection, name: str) -> bytes: ...

    def remove(self, conn: Connection, folder: str) -> list[str]: ...


class LocalModelStore:
    """Bytes under ``root``, one row per object in the database's ``storage.objects``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        path = (self.root / BUCKET / name).resolve()
        if not path.is_relative_to((self.root / BUCKET).resolve()):
            raise GlucokitError(f"object name {name!r} leaves the bucket")
        return path

    def put(self, conn: Connection, name: str, data: bytes, content_type: str) -> None:
        metadata = {"size": len(data), "mimetype": content_type, "eTag": sha256(data)}
        conn.execute(query("storage_put_object"), {"bucket": BUCKET, "name": name, "metadata": Jsonb(metadata)})
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as partial:
            partial.write(data)
            partial.flush()
            os.fsync(partial.fileno())
        Path(partial.name).replace(path)

    def get(self, conn: Connection, name: str) -> bytes:
        row = conn.execute(query("storage_object_etag"), {"bucket": BUCKET, "name": name}).fetchone()
        if row is None:
            raise GlucokitError(f"no model file {name} that this role may read")
        data = self._path(name).read_bytes()
        if sha256(data) != row[0]:
            raise GlucokitError(f"model file {name} does not match the hash recorded for it")
        return data

    def remove(self, conn: Connection, folder: str) -> list[str]:
        names = [
            str(name) for (name,) in conn.execute(query("storage_remove_folder"), {"bucket": BUCKET, "folder": folder})
        ]
        for name in names:
            self._path(name).unlink(missing_ok=True)
        return sorted(names)

    def sweep(self, conn: Connection, folder: str) -> list[str]:
        """Deletes the files under ``folder`` that have no row (writes whose transaction never committed)."""
        known = {
            str(name) for (name,) in conn.execute(query("storage_folder_objects"), {"bucket": BUCKET, "folder": folder})
        }
        base = self._path(folder)
        swept = []
        for path in sorted(base.rglob("*")) if base.exists() else []:
            name = path.relative_to((self.root / BUCKET).resolve()).as_posix()
            if path.is_file() and name not in known:
                path.unlink()
                swept.append(name)
        return swept


def save_model(store: ModelStore, conn: Connection, folder: str, artifacts: ModelArtifacts) -> str:
    """Stores a model version's files in ``folder``; returns the SHA-256 of its weights."""
    files = artifacts.files()
    for name, data in files.items():
        store.put(conn, folder + name, data, CONTENT_TYPES[name])
    return sha256(files[WEIGHTS_FILE])


def load_model(store: ModelStore, conn: Connection, folder: str, weights_sha256: str) -> ModelArtifacts:
    """Reads a model version back, refusing weights whose hash is not the registered one."""
    files = {name: store.get(conn, folder + name) for name in CONTENT_TYPES}
    if sha256(files[WEIGHTS_FILE]) != weights_sha256:
        raise GlucokitError(f"the weights in {folder} are not the ones registered (SHA-256 differs)")
    return ModelArtifacts.from_files(files)
