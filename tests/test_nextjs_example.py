"""The Next.js example (examples/nextjs): its route handler reads the latest forecast through Prisma Client.

The data is built here in the real test database, the way the API tests build
it; then Node's own test runner calls the route handler with real signed
tokens (examples/nextjs/test/forecast-route.test.mts) and checks it against
what glucokit's Python reads return for the same user.

Run as a script, this module rewrites examples/nextjs/lib/disclaimers.json from
lib/glucokit/disclaimer.py:

    .venv/bin/python tests/test_nextjs_example.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from uuid import UUID

import psycopg
import pytest

from api_fixtures import SECRET
from fhir_samples import bundle, cgm
from glucokit.api import reads
from glucokit.db.sessions import Connection, Purpose, as_user, as_worker
from glucokit.db.urls import with_host
from glucokit.disclaimer import DISCLAIMERS, LANGUAGES, disclaimer_text
from glucokit.fhir.ingest import Ingest
from glucokit.modelops import registry
from glucokit.modelops.forecasts import write_forecasts
from glucokit.modelops.model_store import LocalModelStore
from glucokit.modelops.retrain import retrain
from glucokit.project import NODE_BIN, PRISMA_SCHEMA, PROJECT_DIR, SIMULATED_DIR
from owners import Owner, ingest
from test_forecasts import FIRST_NEW, RIDGE

EXAMPLE = PROJECT_DIR / "examples" / "nextjs"
DISCLAIMERS_JSON = EXAMPLE / "lib" / "disclaimers.json"
NODE_TEST = "test/forecast-route.test.mts"
# A session time zone far from UTC, with a 45-minute offset: the route must still answer in true instants.
TIME_ZONE = "Pacific/Chatham"


def _sources(conn: Connection, prediction_id: UUID) -> list[reads.Source]:
    read = reads.point(conn, prediction_id)
    assert read is not None
    return read[1]


def disclaimers_json() -> str:
    """examples/nextjs/lib/disclaimers.json as disclaimer.py defines it."""
    document = {
        "$comment": "Generated from lib/glucokit/disclaimer.py by `.venv/bin/python tests/test_nextjs_example.py`;"
        " do not edit (tests/test_nextjs_example.py fails when the two differ).",
        "languages": list(LANGUAGES),
        "versions": DISCLAIMERS,
    }
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def test_the_examples_disclaimers_are_disclaimer_py_s() -> None:
    assert DISCLAIMERS_JSON.read_text(encoding="utf-8") == disclaimers_json(), (
        "examples/nextjs/lib/disclaimers.json differs from lib/glucokit/disclaimer.py: "
        "rewrite it with `.venv/bin/python tests/test_nextjs_example.py`"
    )


def test_no_disclaimer_text_is_typed_into_the_example() -> None:
    sentences = {
        sentence.strip()
        for texts in DISCLAIMERS.values()
        for text in texts.values()
        for sentence in re.split(r"(?<=\.) ", text)
        if len(sentence.strip()) > 20
    }
    sources = [path for path in EXAMPLE.rglob("*") if path.suffix in {".ts", ".mts", ".js", ".mjs", ".tsx", ".md"}]
    assert sources
    for path in sources:
        text = path.read_text(encoding="utf-8")
        typed = sorted(sentence for sentence in sentences if sentence in text)
        assert typed == [], f"{path.relative_to(PROJECT_DIR)} repeats disclaimer text: read lib/disclaimers.json"


def _node() -> str:
    """The node executable, once node_modules holds what the example needs; skips otherwise."""
    wanted = [NODE_BIN / "prisma", NODE_BIN / "tsx", PROJECT_DIR / "node_modules" / "jose"]
    missing = [str(path.relative_to(PROJECT_DIR)) for path in wanted if not path.exists()]
    node = shutil.which("node")
    if missing or node is None:
        pytest.skip(f"node_modules lacks {', '.join(missing) or 'node'}: `make install` installs it")
    return node


def _generate_prisma_client() -> None:
    """prisma/generated/ (git-ignored) from prisma/schema.prisma: offline, no engine binary."""
    generated = subprocess.run(
        [str(NODE_BIN / "prisma"), "generate", "--schema", str(PRISMA_SCHEMA)],
        cwd=PROJECT_DIR,
        env=os.environ | {"PRISMA_SCHEMA_ENGINE_BINARY": "/dev/null"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr


def _route_database_url(database_url: str) -> str:
    """What the route connects as: ``authenticator``, which may only `set role` (as on Supabase), in TIME_ZONE.

    The test servers trust local logins. An external DATABASE_URL (see conftest) may not let
    ``authenticator`` in without its password, so there the URL's own login is kept.
    """
    parts = urlsplit(with_host(database_url))
    if not os.environ.get("DATABASE_URL"):
        parts = parts._replace(netloc=f"authenticator@{parts.netloc.rpartition('@')[2]}")
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "options"]
    query.append(("options", f"-c TimeZone={TIME_ZONE}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture(scope="module")
def forecasts(
    database_url: str, make_module_owner: Callable[[], Owner], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Owner, Owner, dict[str, object]]:
    """Alice with forecasts from several origins, the newest from two models; Bob with a person and nothing else.

    Alice's data is the API tests' (the simulated fixture, a ridge model, then three later readings), plus a
    newer model's curve from the newest origin: the route must pick that model's points alone. Returns the
    curve as glucokit's Python reads it, too.
    """
    alice, bob = make_module_owner(), make_module_owner()
    store = LocalModelStore(Path(tmp_path_factory.mktemp("models")))
    later = bundle(*(cgm(FIRST_NEW + k, 150) for k in range(3)))
    with psycopg.connect(database_url) as conn:
        Ingest([conn], user_id=alice.user, person_id=alice.person).path(SIMULATED_DIR / "adult-001.json.gz")
        retrain(conn, store, alice.person, "initial", settings=RIDGE)
        write_forecasts(conn, store, alice.person)
        ingest(conn, alice, later)
        write_forecasts(conn, store, alice.person)
        retrain(conn, store, alice.person, "user_request", settings=RIDGE)
        with as_worker(conn, alice.person, Purpose.TRAINING, "test"):
            newer = registry.latest(conn, alice.person)
            assert newer is not None
            if newer.stage != "active":
                registry.activate(conn, alice.person, newer, reason="the Next.js example reads the newer curve")
        assert write_forecasts(conn, store, alice.person).points == 12
        with as_user(conn, alice.user):
            curve = reads.latest_curve(conn, alice.person)
            models_at_origin = conn.execute(
                "select array_agg(distinct model_version order by model_version) from public.forecast "
                "where person_id = %s and generated_at = %s",
                (alice.person, curve[0].generated_at),
            ).fetchone()
            sources = {point.id: _sources(conn, point.id) for point in curve}
    assert models_at_origin == (["1.0.0", newer.version],)
    assert {point.model_version for point in curve} == {newer.version}
    version = curve[0].disclaimer_version
    expected: dict[str, object] = {
        "generated_at": curve[0].generated_at.isoformat(),
        "model_version": newer.version,
        "points": [
            {
                "id": str(point.id),
                "minutes": point.horizon_minutes,
                "value_mg_dl": point.value_mg_dl,
                "lower_mg_dl": point.lower_mg_dl,
                "upper_mg_dl": point.upper_mg_dl,
                "coverage": point.coverage,
                "sources": [
                    {
                        "reference": source.reference,
                        "effective_at": source.effective_at.isoformat(),
                        "role": source.role,
                        "code": source.code,
                    }
                    for source in sources[point.id]
                ],
            }
            for point in curve
        ],
        "disclaimer": {
            "version": version,
            "texts": {language: disclaimer_text(version, language) for language in LANGUAGES},
        },
    }
    return alice, bob, expected


def test_the_route_handler_reads_the_latest_forecast_under_row_level_security(
    database_url: str, forecasts: tuple[Owner, Owner, dict[str, object]]
) -> None:
    node = _node()
    _generate_prisma_client()
    alice, bob, expected = forecasts
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SUPABASE_", "GLUCOKIT_", "NODE_"))
    } | {
        "DATABASE_URL": _route_database_url(database_url),
        "SUPABASE_JWT_SECRET": SECRET,
        "GLUCOKIT_OWNER_USER_ID": str(alice.user),
        "GLUCOKIT_OWNER_PERSON_ID": str(alice.person),
        "GLUCOKIT_OTHER_USER_ID": str(bob.user),
        "GLUCOKIT_OTHER_PERSON_ID": str(bob.person),
        "GLUCOKIT_EXPECTED_CURVE": json.dumps(expected),
    }
    run = subprocess.run(
        [node, "--import", "tsx", "--test", "--test-reporter=spec", NODE_TEST],
        cwd=EXAMPLE,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


if __name__ == "__main__":
    DISCLAIMERS_JSON.write_text(disclaimers_json(), encoding="utf-8")
    print(f"wrote {DISCLAIMERS_JSON.relative_to(PROJECT_DIR)}")
