"""Model cards: written with every registration to the store and the database, read through the API by the owner only,
in English and German, in neutral wording; versions registered before model cards get theirs on read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient

from api_fixtures import bearer, is_problem, token
from fhir_samples import bundle, cgm
from glucokit.db.sessions import Connection, Purpose, as_worker
from glucokit.disclaimer import DISCLAIMER, LANGUAGES, MODEL_CARD_WORDING
from glucokit.fhir.ingest import Ingest
from glucokit.forecast import TrainingSettings
from glucokit.forecast.metrics import RANGES
from glucokit.forecast.windows import HORIZON_MINUTES
from glucokit.modelops import model_card, registry
from glucokit.modelops.model_card import CARD_FILE, CARD_FORMAT, card_text_file
from glucokit.modelops.model_store import LocalModelStore
from glucokit.modelops.retrain import retrain
from glucokit.project import SIMULATED_DIR
from owners import Owner, ingest
from test_registry import register
from wording import forbidden_words, prose

Trained = tuple[Owner, Owner, LocalModelStore]


@pytest.fixture(scope="module")
def trained(
    database_url: str, make_module_owner: Callable[[], Owner], tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """A person with a trained model (ridge, on simulated data), one with a baseline fallback, and the store."""
    owner, short = make_module_owner(), make_module_owner()
    store = LocalModelStore(Path(tmp_path_factory.mktemp("models")))
    with psycopg.connect(database_url) as conn:
        Ingest([conn], user_id=owner.user, person_id=owner.person).path(SIMULATED_DIR / "adult-001.json.gz")
        assert retrain(conn, store, owner.person, "initial", settings=TrainingSettings(families=("ridge",))).version
        ingest(conn, short, bundle(*(cgm(n, 100 + (n % 7)) for n in range(80))))
        assert retrain(conn, store, short.person, "initial").version == "1.0.0"
    return owner, short, store


def stored_card(conn: Connection, store: LocalModelStore, owner: Owner) -> tuple[dict[str, Any], dict[str, Any]]:
    """The card of the owner's first version: from the database and from the store."""
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        (model,) = registry.versions(conn, owner.person)
        assert model.storage_path is not None
        row = conn.execute("select card from public.ml_model where id = %s", (model.id,)).fetchone()
        assert row is not None
        files = {
            name: store.get(conn, model.storage_path + name) for name in (CARD_FILE, *map(card_text_file, LANGUAGES))
        }
    card = orjson.loads(files[CARD_FILE])
    for language in LANGUAGES:
        assert files[card_text_file(language)].decode() == model_card.render(card, language)
    database = row[0]
    assert isinstance(database, dict)
    return database, card


def test_registration_writes_the_card_to_the_store_and_the_database(conn: Connection, trained: Trained) -> None:
    owner, _, store = trained
    database, stored = stored_card(conn, store, owner)
    assert database == stored
    assert stored["format"] == CARD_FORMAT
    assert (stored["version"], stored["algorithm"], stored["fallback"], stored["recorded"]) == (
        "1.0.0",
        "ridge",
        False,
        True,
    )
    assert stored["data"]["days"] > 1
    assert set(stored["data"]["windows"]) == {"train", "validation", "test"}
    selection = stored["selection"]
    assert selection["champion"] in selection["validation_rmse"]
    assert "validation" in selection["reason"]  # the Diebold-Mariano rule's words
    test = stored["test"]
    assert len(test["rmse"]) == len(test["coverage"]) == len(HORIZON_MINUTES)
    assert set(test["coverage_by_range"]) == set(RANGES)
    assert all(0 <= share <= 1 for share in test["coverage"])
    assert stored["coverage_nominal"] == pytest.approx(0.8)


def test_a_baseline_fallback_gets_a_card_that_says_so(conn: Connection, trained: Trained) -> None:
    _, short, store = trained
    _, card = stored_card(conn, store, short)
    assert card["fallback"] is True
    assert card["fallback_reason"]
    assert (card["selection"], card["test"]) == (None, None)
    for language in LANGUAGES:
        text = model_card.render(card, language)
        assert MODEL_CARD_WORDING[language]["limit_fallback"] in text
        assert forbidden_words(text) == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_owner_reads_the_card_in_english_and_german(client: TestClient, trained: Trained, language: str) -> None:
    owner, _, _ = trained
    response = client.get(
        f"/v1/persons/{owner.person}/models/1.0.0/card?lang={language}", headers=bearer(token(owner.user))
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["stage"], body["language"]) == ("1.0.0", "active", language)
    words = MODEL_CARD_WORDING[language]  # type: ignore[index]
    text = body["text"]
    assert text == model_card.render(body["card"], language)  # type: ignore[arg-type]
    for heading in ("intended_use", "out_of_scope", "data", "selection", "metrics", "coverage", "limits"):
        assert f"## {words[heading]}\n" in text
    assert DISCLAIMER[language] in text  # type: ignore[index]
    assert [piece for piece in prose(body) if forbidden_words(piece)] == []


def test_only_the_owner_reads_the_card(client: TestClient, trained: Trained) -> None:
    owner, other, _ = trained
    path = f"/v1/persons/{owner.person}/models/1.0.0/card"
    theirs = is_problem(client.get(path, headers=bearer(token(other.user))), 404)
    assert theirs["detail"] == f"no person {owner.person} among yours"
    is_problem(client.get(path), 401)
    missing = is_problem(
        client.get(f"/v1/persons/{owner.person}/models/9.9.0/card", headers=bearer(token(owner.user))), 404
    )
    assert missing["detail"] == f"person {owner.person} has no model version 9.9.0"
    is_problem(client.get(f"{path}?lang=fr", headers=bearer(token(owner.user))), 422)


def test_a_version_registered_before_model_cards_gets_its_card_when_read(
    conn: Connection, client: TestClient, owner: Owner, tmp_path: Path
) -> None:
    with as_worker(conn, owner.person, Purpose.TRAINING, "test"):
        model = register(conn, owner, LocalModelStore(tmp_path))
        assert conn.execute("select card from public.ml_model where id = %s", (model.id,)).fetchone() == (None,)
    for language in LANGUAGES:
        response = client.get(
            f"/v1/persons/{owner.person}/models/{model.version}/card?lang={language}", headers=bearer(token(owner.user))
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["card"] == model_card.facts(model.version, model, None)
        assert MODEL_CARD_WORDING[language]["selection_unrecorded"] in body["text"]
        assert forbidden_words(body["text"]) == []
