"""Model artifacts in the private ``models`` bucket: where they live, what they hold, how they are stored.

A model version is a folder ``{owner_id}/{person_id}/{model_type}/v{version}/``
holding ``model.safetensors`` (the weights; never pickle), ``metadata.json``
and ``training_log.txt``. Every object is a row of ``storage.objects``, so the
bucket's policies decide who may read or write it: workers write only into the
folder of the person their transaction is scoped to, users read only under
their own first folder.

Two stores keep the bytes (``from_settings`` picks one):

``LocalModelStore`` keeps them under a data directory and the rows in the
database's ``storage.objects`` (the same policies hold locally as on Supabase).
It works inside the caller's transaction: the row is written first, under the
policies, and the bytes only once the database has accepted it, so a refused
write leaves no file. Bytes whose row never committed are invisible (every read
starts from the row) and ``sweep`` removes them.

``SupabaseModelStore`` goes through the Supabase Storage API with a token it
signs for whoever the caller's transaction runs as: the person a worker
transaction is scoped to (role ``glucokit_worker``; migration 20261122120800),
or the signed-in user of a user transaction (role ``authenticated``, as
Supabase Auth issues it: the owner's export reads their files so), never
``service_role``; Storage applies the same policies to that token as the
database does to the transaction. Storage commits each upload in a
transaction of its own, so files of a version whose registration never
committed stay behind until ``sweep`` removes them (docs/worker-role.md).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Protocol
from uuid import UUID

import httpx
import jwt
import orjson
import torch
from psycopg.types.json import Jsonb
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from storage3 import SyncStorageClient
from storage3.exceptions import StorageApiError

from glucokit.db.queries import query
from glucokit.db.sessions import Connection, user_claims
from glucokit.errors import GlucokitError
from glucokit.forecast import ForecastState
from glucokit.project import MODEL_STORE_DIR
from glucokit.settings import StoreSettings

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
# The worker token: its role, the claim naming the person (private.worker_storage_prefix()
# in migration 20261122120800 reads the same name) and how long it is valid.
WORKER_ROLE: Final = "glucokit_worker"
PERSON_CLAIM: Final = "glucokit_person_id"
TOKEN_LIFETIME: Final = timedelta(minutes=5)
STORAGE_CALLERS: Final = (
    "Supabase Storage is used from a signed-in user's transaction or a worker transaction scoped to one person only"
)
# Storage deletes at most this many objects per request (supabase/storage,
# src/storage/limits.ts: MAX_OBJECTS_PER_REQUEST).
STORAGE_DELETE_LIMIT: Final = 1000
# Room for a model file of the bucket's 50 MB limit on a slow link.
STORAGE_TIMEOUT: Final = httpx.Timeout(120.0, connect=10.0)


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
            log=files.get(LOG_FILE, b"").decode(),
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelStore(Protocol):
    """Object storage for the ``models`` bucket, used inside a transaction of ``conn`` and as its caller: a signed-in
    user (who may read their own files) or a worker scoped to one person (who may write and remove theirs)."""

    def put(self, conn: Connection, name: str, data: bytes, content_type: str) -> None: ...

    def get(self, conn: Connection, name: str) -> bytes: ...

    def remove(self, conn: Connection, folder: str) -> list[str]:
        """Removes the objects under ``folder``; returns their names, sorted."""
        ...

    def sweep(self, conn: Connection, folder: str) -> list[str]:
        """Removes what under a person's ``folder`` belongs to no registered model version; returns the names."""
        ...


def unregistered_folders(conn: Connection, folder: str) -> list[str]:
    """The model folders under ``folder`` that hold objects and that no model version registers.

    Both the objects and the model versions are the rows the current role sees:
    inside a worker's scope, the scoped person's.
    """
    rows = conn.execute(query("storage_unregistered_folders"), {"bucket": BUCKET, "folder": folder})
    return [str(unregistered) for (unregistered,) in rows]


def remove_unregistered(store: ModelStore, conn: Connection, folder: str) -> list[str]:
    """Removes the objects of the model folders under ``folder`` that no model version registers; returns them."""
    return sorted(
        name for unregistered in unregistered_folders(conn, folder) for name in store.remove(conn, unregistered)
    )


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
        """Removes the model folders no version registers, then the files that have no row.

        Files without a row are writes whose transaction never committed; rows in
        an unregistered folder are files stored in a transaction of their own.
        """
        removed = remove_unregistered(self, conn, folder)
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
        return sorted(removed + swept)


@contextmanager
def _storage_refusals(action: str) -> Iterator[None]:
    """Storage's refusals as one-line errors."""
    try:
        yield
    except StorageApiError as refusal:
        raise GlucokitError(f"Supabase Storage refused to {action}: {refusal.message} ({refusal.status})") from refusal


class SupabaseModelStore:
    """The bucket in Supabase Storage, reached as the role and claims of the caller's transaction.

    Every call signs a token for whoever ``conn``'s transaction runs as: in a
    worker transaction, for the person it is scoped to
    (``private.begin_person_scope``), and Storage runs the request as
    ``glucokit_worker`` confined to that person's folder; in a signed-in
    user's transaction (``sessions.as_user``), for that user, and the bucket's
    owner policy confines it to their own folders. The ``apikey`` header
    carries the project's anon key, which grants nothing by itself. Other
    transactions (unscoped workers, anon, the database owner) cannot use it.
    """

    def __init__(self, url: str, anon_key: str, jwt_secret: str) -> None:
        self.storage_url = f"{url.rstrip('/')}/storage/v1/"
        self._anon_key = anon_key
        self._jwt_secret = jwt_secret
        self._http = httpx.Client(timeout=STORAGE_TIMEOUT)

    def _sign(self, claims: dict[str, object]) -> str:
        issued = int(time.time())
        lifetime = {"iat": issued, "exp": issued + int(TOKEN_LIFETIME.total_seconds())}
        return jwt.encode(claims | lifetime, self._jwt_secret, algorithm="HS256")

    def token(self, conn: Connection) -> str:
        """A token for Storage acting as ``conn``'s transaction acts: the signed-in user, or the scoped worker."""
        (role,) = conn.execute(query("storage_caller_role")).fetchone() or (None,)
        if role == WORKER_ROLE:
            return self.worker_token(conn)
        if role == "authenticated":
            (user,) = conn.execute(query("storage_caller_user")).fetchone() or (None,)
            if isinstance(user, UUID):
                return self._sign(user_claims(user))
        raise GlucokitError(STORAGE_CALLERS)

    def worker_token(self, conn: Connection) -> str:
        """A token for Storage naming the person ``conn``'s transaction is scoped to, valid for TOKEN_LIFETIME."""
        row = conn.execute(query("worker_scope")).fetchone()
        if row is None or row[0] is None:
            raise GlucokitError(STORAGE_CALLERS)
        return self._sign({"role": WORKER_ROLE, PERSON_CLAIM: str(row[0])})

    def _client(self, conn: Connection) -> SyncStorageClient:
        headers = {"apikey": self._anon_key, "Authorization": f"Bearer {self.token(conn)}"}
        return SyncStorageClient(self.storage_url, headers, http_client=self._http)

    def put(self, conn: Connection, name: str, data: bytes, content_type: str) -> None:
        # upsert: a version folder left by a crash is written again by the next retrain.
        with _storage_refusals(f"store {name}"):
            self._client(conn).from_(BUCKET).upload(name, data, {"content-type": content_type, "upsert": "true"})

    def get(self, conn: Connection, name: str) -> bytes:
        with _storage_refusals(f"read {name}"):
            return self._client(conn).from_(BUCKET).download(name)

    def remove(self, conn: Connection, folder: str) -> list[str]:
        names = sorted(
            str(name) for (name,) in conn.execute(query("storage_folder_objects"), {"bucket": BUCKET, "folder": folder})
        )
        bucket = self._client(conn).from_(BUCKET)
        removed: list[str] = []
        for start in range(0, len(names), STORAGE_DELETE_LIMIT):
            with _storage_refusals(f"remove objects under {folder}"):
                removed.extend(str(gone["name"]) for gone in bucket.remove(names[start : start + STORAGE_DELETE_LIMIT]))
        return sorted(removed)

    def sweep(self, conn: Connection, folder: str) -> list[str]:
        """Removes, through Storage, the model folders under ``folder`` that no model version registers."""
        return remove_unregistered(self, conn, folder)


def from_settings(settings: StoreSettings) -> ModelStore:
    """``SupabaseModelStore`` when the Supabase settings are given (the settings hold all three or none), else the
    local store, in GLUCOKIT_MODEL_DIR or MODEL_STORE_DIR."""
    if settings.supabase_url and settings.supabase_anon_key and settings.supabase_jwt_secret:
        return SupabaseModelStore(
            settings.supabase_url,
            settings.supabase_anon_key.get_secret_value(),
            settings.supabase_jwt_secret.get_secret_value(),
        )
    return LocalModelStore(settings.model_dir or MODEL_STORE_DIR)


def save_model(store: ModelStore, conn: Connection, folder: str, artifacts: ModelArtifacts) -> str:
    """Stores a model version's files in ``folder``; returns the SHA-256 of its weights."""
    files = artifacts.files()
    for name, data in files.items():
        store.put(conn, folder + name, data, CONTENT_TYPES[name])
    return sha256(files[WEIGHTS_FILE])


def load_model(
    store: ModelStore, conn: Connection, folder: str, weights_sha256: str, names: tuple[str, ...] = tuple(CONTENT_TYPES)
) -> ModelArtifacts:
    """Reads a model version's files ``names`` (all of them by default) back, refusing weights whose hash is not the
    registered one."""
    files = {name: store.get(conn, folder + name) for name in names}
    if sha256(files[WEIGHTS_FILE]) != weights_sha256:
        raise GlucokitError(f"the weights in {folder} are not the ones registered (SHA-256 differs)")
    return ModelArtifacts.from_files(files)


class StoredVersion(Protocol):
    """Where a registered model version's files are (``registry.ModelVersion`` is one; the registry imports this
    module, so it is named by its shape)."""

    @property
    def version(self) -> str: ...

    @property
    def storage_path(self) -> str | None: ...

    @property
    def artifact_sha256(self) -> str | None: ...


class LoadedModels:
    """The forecasters a process has loaded, most recently used last, at most ``limit_bytes`` of weights in all.

    Keyed by a version's folder (which names its person and version) and the SHA-256 of its weights: a stored
    version never changes, so a forecaster loaded once serves every later pass of the same person's same
    version, and never another person's (another folder) or another version (another folder and hash). The
    caller reads the version through the registry in the person's scope, so the row-level security that admits
    the version admits the cached forecaster. The least recently used are dropped once the weights they were
    loaded from pass the limit; a single larger one is not kept. A kept state also holds its restored forecaster
    (``ForecastState.forecaster``, made on first use), about as large again as its weights.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._states: OrderedDict[tuple[str, str], tuple[ForecastState, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # a process's threads share it

    def __len__(self) -> int:
        return len(self._states)

    @property
    def weight_bytes(self) -> int:
        """The size of the weights files the kept forecasters were loaded from."""
        return self._bytes

    def get(self, key: tuple[str, str]) -> ForecastState | None:
        with self._lock:
            kept = self._states.get(key)
            if kept is None:
                return None
            self._states.move_to_end(key)
            return kept[0]

    def keep(self, key: tuple[str, str], state: ForecastState, size: int) -> None:
        with self._lock:
            if size > self.limit_bytes or key in self._states:
                return
            self._states[key] = (state, size)
            self._bytes += size
            while self._bytes > self.limit_bytes:
                _, (_, dropped) = self._states.popitem(last=False)
                self._bytes -= dropped


# The bound on what a worker process keeps loaded: 64 MiB of weights, whatever the number of versions.
LOADED_MODELS_BYTES: Final = 64 * 2**20
loaded_models: Final = LoadedModels(LOADED_MODELS_BYTES)


def load_state(conn: Connection, store: ModelStore, model: StoredVersion) -> ForecastState:
    """A registered version's forecaster, read back from its files (hash checked) unless this process has it
    loaded already (``loaded_models``)."""
    if model.storage_path is None or model.artifact_sha256 is None:
        raise ValueError(f"version {model.version} has no stored files")
    key = (model.storage_path, model.artifact_sha256)
    state = loaded_models.get(key)
    if state is not None:
        return state
    # The training log the forecaster does not read is not fetched.
    files = (WEIGHTS_FILE, METADATA_FILE)
    artifacts = load_model(store, conn, model.storage_path, model.artifact_sha256, files)
    state = ForecastState.from_saved(artifacts.metadata["forecast_state"], artifacts.weights)
    loaded_models.keep(key, state, sum(tensor.nbytes for tensor in artifacts.weights.values()))
    return state
