"""The Supabase Storage model store: worker tokens, the storage policies as Storage applies them, sweeping, settings.

No Storage API runs here. The tests below that need none check what the store
sends (the token) and what the database does with it: each Storage request runs
in a transaction of its own, in a session of Storage's login, after the
statement of supabase/storage's src/internal/database/postgres/scope.ts (the
token's role and claims, set for that transaction), which ``storage_request``
repeats. The last test goes through
a real project's Storage and runs only when one is configured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote
from uuid import UUID, uuid4

import httpx
import jwt
import orjson
import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from fhir_samples import bundle, cgm
from glucokit.db.queries import query
from glucokit.db.sessions import Connection, Purpose, as_anon, as_user, as_worker, become_role, user_claims
from glucokit.disclaimer import LANGUAGES
from glucokit.errors import GlucokitError
from glucokit.modelops import registry
from glucokit.modelops.model_card import CARD_FILE, card_text_file
from glucokit.modelops.model_store import (
    BUCKET,
    LOG_FILE,
    METADATA_FILE,
    PERSON_CLAIM,
    TOKEN_LIFETIME,
    WEIGHTS_FILE,
    WORKER_ROLE,
    LocalModelStore,
    SupabaseModelStore,
    from_settings,
    load_state,
    model_folder,
    person_folder,
    unregistered_folders,
)
from glucokit.modelops.retrain import retrain
from glucokit.privacy import rights as privacy
from glucokit.project import MIGRATIONS_DIR, MODEL_STORE_DIR, PROJECT_DIR
from glucokit.settings import StoreSettings, load
from glucokit.tooling import platform
from owners import Owner, ingest
from test_registry import register

SECRET = "a-test-jwt-secret-of-the-length-supabase-uses-0123456789"
MIGRATION = MIGRATIONS_DIR / "20261122120800_storage_api_worker_scope.sql"
FILES = sorted((LOG_FILE, METADATA_FILE, WEIGHTS_FILE))
# What a retrain stores: the version's files and its model card.
RETRAIN_FILES = sorted((*FILES, CARD_FILE, *map(card_text_file, LANGUAGES)))


# The variables that make the Supabase model store (glucokit.settings.SupabaseSettings).
SUPABASE_ENVIRONMENT = ("SUPABASE_URL", "SUPABASE_ANON_KEY", "SUPABASE_JWT_SECRET")


def store() -> SupabaseModelStore:
    return SupabaseModelStore("https://project-ref.supabase.example", "anon-key", SECRET)


def token_claims(conn: Connection, person: UUID) -> dict[str, object]:
    """The claims of the token the store signs inside ``person``'s scope, as Storage verifies them."""
    with as_worker(conn, person, Purpose.TRAINING, "test"):
        token = store().worker_token(conn)
    claims: dict[str, object] = jwt.decode(token, SECRET, algorithms=["HS256"])
    return claims


@contextmanager
def storage_request(conn: Connection, claims: Mapping[str, object]) -> Iterator[Connection]:
    """One transaction the way Storage runs a request with a verified token: logged in as Storage's own login,
    supabase_storage_admin, which migration 20261122120800 lets switch to glucokit_worker (scope.ts: role, claims,
    delete flag). The login is a stand-in, made and dropped inside the transaction: a committed one would make
    the server look like a Supabase project (platform.SUPABASE_ROLES) to every database on it."""
    with conn.transaction():
        conn.execute("create role supabase_storage_admin noinherit")
        conn.execute("grant glucokit_worker to supabase_storage_admin")
        conn.execute("set local session authorization supabase_storage_admin")
        conn.execute(
            "select set_config('role', %(role)s, true), set_config('request.jwt.claim.role', %(role)s, true),"
            " set_config('request.jwt.claim.sub', %(sub)s, true), set_config('request.jwt.claims', %(claims)s, true),"
            " set_config('storage.allow_delete_query', 'true', true)",
            {"role": str(claims["role"]), "sub": str(claims.get("sub", "")), "claims": json.dumps(claims)},
        )
        yield conn
        conn.execute("reset role; reset session authorization; drop role supabase_storage_admin")


def put_row(conn: Connection, name: str) -> None:
    conn.execute(query("storage_put_object"), {"bucket": BUCKET, "name": name, "metadata": Jsonb({"size": 1})})


def visible(conn: Connection, folder: str) -> list[str]:
    rows = conn.execute(query("storage_folder_objects"), {"bucket": BUCKET, "folder": folder})
    return sorted(str(name) for (name,) in rows)


def file_in(owner: Owner, version: str = "1.0.0", file: str = WEIGHTS_FILE) -> str:
    return model_folder(owner.user, owner.person, version) + file


@pytest.fixture
def two(conn: Connection, make_owner: Callable[[], Owner]) -> Iterator[tuple[Owner, Owner]]:
    """Two persons; the storage rows the test leaves under their folders are removed afterwards."""
    pair = (make_owner(), make_owner())
    yield pair
    conn.rollback()
    with conn.transaction():
        conn.execute("select set_config('storage.allow_delete_query', 'true', true)")
        for owner in pair:
            conn.execute(
                "delete from storage.objects where bucket_id = %s and starts_with(name, %s)", (BUCKET, f"{owner.user}/")
            )


# -- the token ----------------------------------------------------------------------------------------------------


def test_the_worker_token_names_the_scoped_person_and_expires_within_minutes(conn: Connection, owner: Owner) -> None:
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        token = store().worker_token(conn)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert set(claims) == {"role", PERSON_CLAIM, "iat", "exp"}  # no sub: the token is no user
    assert claims["role"] == WORKER_ROLE == "glucokit_worker"
    assert claims[PERSON_CLAIM] == str(owner.person)
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME.total_seconds() <= 300
    assert abs(claims["iat"] - time.time()) < 30
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET + "-another-project", algorithms=["HS256"])


def test_no_token_without_a_person_scope(conn: Connection) -> None:
    with as_worker(conn, None), pytest.raises(GlucokitError, match="scoped to one person"):
        store().worker_token(conn)
    for transaction in (as_worker(conn, None), as_anon(conn), conn.transaction()):
        with transaction, pytest.raises(GlucokitError, match="signed-in user's transaction or a worker transaction"):
            store().token(conn)


def test_a_signed_in_users_transaction_gets_that_users_token(conn: Connection, owner: Owner) -> None:
    with as_user(conn, owner.user):
        token = store().token(conn)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="authenticated")
    assert {name: claims[name] for name in ("sub", "role", "aud")} == user_claims(owner.user)
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME.total_seconds()
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        assert jwt.decode(store().token(conn), SECRET, algorithms=["HS256"])["role"] == WORKER_ROLE


# -- what Storage does with the token --------------------------------------------------------------------------------


def test_a_worker_token_writes_reads_and_removes_its_persons_files_only(
    conn: Connection, two: tuple[Owner, Owner]
) -> None:
    owner, other = two
    claims = token_claims(conn, owner.person)
    with storage_request(conn, claims):
        put_row(conn, file_in(owner))
    with as_worker(conn, other.person, Purpose.TRAINING, "test"):
        put_row(conn, file_in(other))
    with storage_request(conn, claims):
        assert visible(conn, f"{owner.user}/") == [file_in(owner)]
        assert visible(conn, f"{other.user}/") == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege), storage_request(conn, claims):
        put_row(conn, file_in(other, "2.0.0"))
    with storage_request(conn, claims):
        removed = conn.execute(query("storage_remove_folder"), {"bucket": BUCKET, "folder": f"{other.user}/"})
        assert removed.fetchall() == []
        removed = conn.execute(query("storage_remove_folder"), {"bucket": BUCKET, "folder": f"{owner.user}/"})
        assert [name for (name,) in removed] == [file_in(owner)]
    with as_worker(conn, other.person, Purpose.TRAINING, "test"):
        assert visible(conn, f"{other.user}/") == [file_in(other)]


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "glucokit_worker"},
        {"role": "glucokit_worker", PERSON_CLAIM: "not-a-uuid"},
        {"role": "glucokit_worker", PERSON_CLAIM: 42},
        {"role": "glucokit_worker", PERSON_CLAIM: {"id": "nested"}},
        {"role": "glucokit_worker", PERSON_CLAIM: str(uuid4())},  # no such person
        "{not json",
    ],
    ids=["no claim", "not a uuid", "a number", "an object", "no such person", "claims not json"],
)
def test_a_token_without_a_valid_person_claim_reaches_nothing(
    conn: Connection, two: tuple[Owner, Owner], claims: Mapping[str, object] | str
) -> None:
    owner, _ = two
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        put_row(conn, file_in(owner))
    request = {"role": "glucokit_worker"} if isinstance(claims, str) else claims
    with storage_request(conn, request):
        if isinstance(claims, str):  # what Storage never sends, but the policies must not trip over
            conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        assert visible(conn, f"{owner.user}/") == []
        assert conn.execute("select private.worker_storage_prefix()").fetchone() == (None,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), storage_request(conn, request):
        put_row(conn, file_in(owner, "2.0.0"))


def test_a_scoped_transaction_keeps_its_scope_whatever_the_claims_say(
    conn: Connection, two: tuple[Owner, Owner]
) -> None:
    owner, other = two
    claims = json.dumps(token_claims(conn, other.person))
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        put_row(conn, file_in(owner))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            put_row(conn, file_in(other))


def test_only_the_worker_role_falls_back_to_the_token(conn: Connection, two: tuple[Owner, Owner]) -> None:
    owner, _ = two
    claims = json.dumps(token_claims(conn, owner.person))
    with conn.transaction():  # the database owner, not switched to glucokit_worker
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        assert conn.execute("select private.worker_storage_prefix()").fetchone() == (None,)
    with storage_request(conn, json.loads(claims)):
        assert conn.execute("select private.worker_storage_prefix()").fetchone() == (f"{owner.user}/{owner.person}/",)


def test_a_worker_token_opens_the_model_folder_and_no_table(conn: Connection, two: tuple[Owner, Owner]) -> None:
    owner, _ = two
    ingest(conn, owner, bundle(cgm(0), cgm(1)))
    with storage_request(conn, token_claims(conn, owner.person)):
        for table in ("person", "observation", "training_run", "ml_model", "prediction"):
            count = sql.SQL("select count(*) from {}").format(sql.Identifier("public", table))
            assert conn.execute(count).fetchone() == (0,), table
        assert conn.execute("select private.worker_person_id()").fetchone() == (None,)


def test_storage_can_switch_to_the_worker_role_once_the_migration_granted_it(conn: Connection, owner: Owner) -> None:
    """On Supabase, Storage's login supabase_storage_admin sets the role; here a stand-in, rolled back."""
    with conn.transaction():
        supabase = platform.is_supabase(conn)
    if supabase:
        pytest.skip("a Supabase project has the real supabase_storage_admin: the live test covers it")
    claims = json.dumps(token_claims(conn, owner.person))
    switch = "select set_config('role', 'glucokit_worker', true), set_config('request.jwt.claims', %s, true)"
    with conn.transaction(force_rollback=True):
        conn.execute("create role supabase_storage_admin noinherit")
        with conn.transaction(force_rollback=True):
            conn.execute("set local session authorization supabase_storage_admin")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="set role"):
                conn.execute(switch, (claims,))
        conn.execute(MIGRATION.read_bytes())
        conn.execute("set local session authorization supabase_storage_admin")
        conn.execute(switch, (claims,))
        assert conn.execute("select current_user, session_user").fetchone() == (
            "glucokit_worker",
            "supabase_storage_admin",
        )
        put_row(conn, file_in(owner))
        assert visible(conn, f"{owner.user}/") == [file_in(owner)]


# -- the owner's export through Storage -------------------------------------------------------------------------------


class StorageStandIn:
    """Storage's object download (GET /storage/v1/object/models/NAME) the way supabase/storage serves it: the token
    verified, the object's row read in a transaction of the token's role and claims, so that the bucket's policies
    decide, and the bytes from where a local store keeps them."""

    PREFIX = f"/storage/v1/object/{BUCKET}/"

    def __init__(self, database_url: str, files: LocalModelStore) -> None:
        self.database_url = database_url
        self.files = files

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.method == "GET", request.url
        assert request.url.path.startswith(self.PREFIX), request.url
        name = unquote(request.url.path.removeprefix(self.PREFIX))
        bearer = request.headers["authorization"].removeprefix("Bearer ")
        claims = jwt.decode(bearer, SECRET, algorithms=["HS256"], options={"verify_aud": False})
        with psycopg.connect(self.database_url) as db, db.transaction():
            db.execute(become_role(str(claims["role"]), claims))
            seen = db.execute(query("storage_object_etag"), {"bucket": BUCKET, "name": name}).fetchone()
        if seen is None:
            return httpx.Response(400, json={"statusCode": "404", "error": "not_found", "message": "Object not found"})
        return httpx.Response(200, content=self.files.root.joinpath(BUCKET, name).read_bytes())


def test_the_owner_exports_their_model_files_through_storage(
    conn: Connection, database_url: str, two: tuple[Owner, Owner], tmp_path: Path
) -> None:
    """The export reads each model version's metadata as the signed-in owner: with a user token, which Storage
    accepts for the owner's files only."""
    owner, other = two
    files = LocalModelStore(tmp_path / "store")
    models = {}
    for person in two:
        with as_worker(conn, person.person, Purpose.TRAINING, "test"):
            models[person] = register(conn, person, files)
    supabase = store()
    supabase._http = httpx.Client(transport=httpx.MockTransport(StorageStandIn(database_url, files)))
    report = privacy.export_everything(conn, supabase, owner.user, owner.person, tmp_path / "export")
    assert report.models == 1
    records = orjson.loads((tmp_path / "export" / "records.json").read_bytes())
    assert records["model_metadata"] == {models[owner].storage_path: {"version": "1.0.0"}}
    theirs = models[other].storage_path
    assert theirs is not None
    with as_user(conn, owner.user), pytest.raises(GlucokitError, match="Supabase Storage refused to read"):
        supabase.get(conn, theirs + METADATA_FILE)


# -- sweeping --------------------------------------------------------------------------------------------------------


def test_the_sweep_selects_the_folders_no_version_registers(
    conn: Connection, two: tuple[Owner, Owner], tmp_path: Path
) -> None:
    """What a Supabase sweep removes through Storage: objects a crashed retrain's uploads committed, unregistered."""
    owner, other = two
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        kept = register(conn, owner, LocalModelStore(tmp_path))
    claims = token_claims(conn, owner.person)
    for version in ("1.1.0", "2.0.0"):
        with storage_request(conn, claims):
            for file in FILES:
                put_row(conn, file_in(owner, version, file))
    with storage_request(conn, token_claims(conn, other.person)):
        put_row(conn, file_in(other, "1.0.0"))
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        assert unregistered_folders(conn, person_folder(owner.user, owner.person)) == [
            model_folder(owner.user, owner.person, "1.1.0"),
            model_folder(owner.user, owner.person, "2.0.0"),
        ]
    assert kept.storage_path == model_folder(owner.user, owner.person, "1.0.0")
    with as_worker(conn, other.person, Purpose.TRAINING, "test"):
        assert unregistered_folders(conn, person_folder(other.user, other.person)) == [
            model_folder(other.user, other.person, "1.0.0")
        ]
        assert unregistered_folders(conn, person_folder(owner.user, owner.person)) == []


# -- settings --------------------------------------------------------------------------------------------------------


def test_the_environment_picks_the_store() -> None:
    local = from_settings(load(StoreSettings, {}))
    assert isinstance(local, LocalModelStore)
    assert local.root == MODEL_STORE_DIR
    settings = dict(zip(SUPABASE_ENVIRONMENT, ("https://ref.supabase.co/", "anon", SECRET), strict=True))
    supabase = from_settings(load(StoreSettings, settings))
    assert isinstance(supabase, SupabaseModelStore)
    assert supabase.storage_url == "https://ref.supabase.co/storage/v1/"
    with pytest.raises(GlucokitError, match="needs SUPABASE_ANON_KEY, SUPABASE_JWT_SECRET too"):
        from_settings(load(StoreSettings, {"SUPABASE_URL": "https://ref.supabase.co"}))
    with pytest.raises(GlucokitError, match="needs SUPABASE_URL too"):
        from_settings(load(StoreSettings, settings | {"SUPABASE_URL": ""}))


def test_the_retrain_job_refuses_part_of_the_supabase_settings() -> None:
    environment = {name: value for name, value in os.environ.items() if name not in SUPABASE_ENVIRONMENT}
    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "workers" / "retrain_job.py")],
        capture_output=True, text=True, timeout=120, check=False,
        env=environment | {"SUPABASE_URL": "https://ref.supabase.co", "SUPABASE_JWT_SECRET": SECRET},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "retrain_job: the Supabase model store needs SUPABASE_ANON_KEY too "
        "(set all of SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_JWT_SECRET, or none for the local store)"
    )


# -- a real project ---------------------------------------------------------------------------------------------------

LIVE = all(os.environ.get(name) for name in (*SUPABASE_ENVIRONMENT, "DATABASE_URL"))


@pytest.mark.skipif(
    not LIVE,
    reason="needs a real Supabase project: SUPABASE_URL, SUPABASE_ANON_KEY, SUPABASE_JWT_SECRET and DATABASE_URL",
)
def test_the_supabase_store_through_a_real_projects_storage(
    conn: Connection, two: tuple[Owner, Owner], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retrain, crash after upload, sweep, isolation and removal, all through Storage with worker tokens."""
    supabase = from_settings(load(StoreSettings))
    assert isinstance(supabase, SupabaseModelStore)
    owner, other = two
    for person in two:
        ingest(conn, person, bundle(*(cgm(n, 100 + (n % 7)) for n in range(80))))
    try:
        assert retrain(conn, supabase, owner.person, "initial").version == "1.0.0"
        assert retrain(conn, supabase, other.person, "initial").version == "1.0.0"

        def killed(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("killed after upload, before registration")

        with monkeypatch.context() as patch:
            patch.setattr(registry, "register", killed)
            with pytest.raises(RuntimeError, match="killed"):
                retrain(conn, supabase, owner.person, "scheduled")
        crashed = model_folder(owner.user, owner.person, "1.1.0")
        with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
            # Storage committed the uploads; the registration rolled back with the worker's transaction.
            assert visible(conn, crashed) == [crashed + file for file in RETRAIN_FILES]
            swept = supabase.sweep(conn, person_folder(owner.user, owner.person))
            assert swept == [crashed + file for file in RETRAIN_FILES]
            assert visible(conn, crashed) == []
            (model,) = registry.versions(conn, owner.person)
            load_state(conn, supabase, model)  # the registered version is whole

            theirs = file_in(other)
            with pytest.raises(GlucokitError, match="Supabase Storage refused to read"):
                supabase.get(conn, theirs)
            with pytest.raises(GlucokitError, match="Supabase Storage refused to store"):
                supabase.put(conn, file_in(other, "9.0.0"), b"{}", "application/json")
            assert supabase.remove(conn, model_folder(other.user, other.person, "1.0.0")) == []
        with as_worker(conn, other.person, Purpose.TRAINING, "test"):
            assert supabase.get(conn, theirs)[:8]  # still there, readable in its own person's scope
        assert retrain(conn, supabase, owner.person, "scheduled").version == "1.1.0"
    finally:
        for person in two:
            with as_worker(conn, person.person, Purpose.TRAINING, "test"):
                for model in registry.versions(conn, person.person):
                    assert model.storage_path is not None
                    supabase.remove(conn, model.storage_path)
