"""The CGM summary (HL7 CGM Implementation Guide) against the real database: exact figures on hand-built readings,
who may read it, the API route, the command line and the FHIR form."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from api_fixtures import SECRET, bearer, is_problem, token
from glucokit.api import ApiSettings, TokenVerifier, create_app
from glucokit.cli.main import main
from glucokit.db.sessions import Connection, as_anon, as_user, as_worker
from glucokit.fhir import summary
from glucokit.privacy.consent import Purpose
from owners import Owner
from wording import forbidden_words

START = datetime(2026, 10, 1, tzinfo=UTC)
DAY = timedelta(days=1)
# Every range, with values on and beside each bound: 2 below 54, 2 from 54 to below 70, 11 from 70 to 180,
# 3 above 180 up to 250, 2 above 250 (the bounds as the consensus spells them for whole mg/dL: 54-69, 181-250).
VALUES = [50, 53.9, 54, 69.9, 70, 100, 120, 140, 160, 180, 180.5, 200, 250, 251, 300, 120, 120, 120, 120, 120]
# 03:20Z to 04:55Z: across local midnight in New York (UTC-4 in October), within one day in UTC.
FIRST = START + timedelta(hours=3, minutes=20)


def insert(conn: Connection, owner: Owner, readings: Sequence[tuple[datetime, float]], **columns: str) -> None:
    """CGM readings of ``owner``'s person (as the database owner; ``columns`` overrides code or status)."""
    code, status = columns.get("code", "99504-3"), columns.get("status", "final")
    with conn.cursor() as cursor:
        cursor.executemany(
            """insert into public.observation (person_id, code, status, value, unit, effective_at, source_system,
                 source_id) values (%s, %s, %s, %s, 'mg/dL', %s, 'urn:test', %s)""",
            [(owner.person, code, status, value, at, f"{code}-{status}-{at.isoformat()}") for at, value in readings],
        )
    conn.commit()


@pytest.fixture
def alice(conn: Connection, make_owner: Callable[[], Owner]) -> Owner:
    """Twenty readings 5 minutes apart in New York, and readings that must not count."""
    owner = make_owner()
    conn.execute("update public.person set time_zone = 'America/New_York' where id = %s", (owner.person,))
    insert(conn, owner, [(FIRST + timedelta(minutes=5 * k), value) for k, value in enumerate(VALUES)])
    insert(conn, owner, [(FIRST + timedelta(minutes=1), 400)], status="entered-in-error")
    insert(conn, owner, [(FIRST + timedelta(minutes=2), 400)], status="cancelled")
    insert(conn, owner, [(FIRST + timedelta(minutes=3), 400)], code="2339-0")  # a blood glucose reading, not CGM
    insert(conn, owner, [(START - timedelta(seconds=1), 400), (START + DAY, 400)])  # just outside [START, +1 day)
    return owner


def read(conn: Connection, owner: Owner, start: datetime = START, end: datetime = START + DAY) -> summary.CgmSummary:
    with as_user(conn, owner.user):
        return summary.read(conn, owner.person, start, end)


def test_the_figures_of_hand_built_readings(conn: Connection, alice: Owner, make_owner: Callable[[], Owner]) -> None:
    other = make_owner()
    insert(conn, other, [(FIRST, 400)])  # another person's reading in the same period
    found = read(conn, alice)
    mean, sd = statistics.mean(VALUES), statistics.stdev(VALUES)
    assert (found.period_from, found.period_to) == (START, START + DAY)
    assert (found.readings, found.reading_interval_seconds, found.expected_readings) == (20, 300, 288)
    assert found.sensor_active_percent == pytest.approx(100 * 20 / 288)
    assert found.days_of_wear == 2  # 23:20 to 00:55 New York time
    assert found.mean_mg_dl == pytest.approx(mean)
    assert found.sd_mg_dl == pytest.approx(sd)
    assert found.cv_percent == pytest.approx(100 * sd / mean)
    assert found.gmi_percent == pytest.approx(3.31 + 0.02392 * mean)
    ranges = (found.very_low_percent, found.low_percent, found.in_range_percent, found.high_percent,
              found.very_high_percent)  # fmt: skip
    assert ranges == pytest.approx((10, 10, 55, 15, 10))
    assert found.sufficient is False
    assert found.reason == (
        "the period covers 1.0 days, and at least 14 are recommended; "
        "the sensor was active 6.9 % of the period, and at least 70 % is recommended"
    )
    assert forbidden_words(found.reason) == []
    with as_user(conn, alice.user):  # the same local days in UTC: one
        conn.execute("update public.person set time_zone = 'UTC' where id = %s", (alice.person,))
    assert read(conn, alice).days_of_wear == 1


def test_fourteen_days_at_seventy_percent_are_representative(conn: Connection, owner: Owner) -> None:
    # 14 days at 5 minutes is 4,032 readings; every tenth missing leaves 3,628 (90.0 %).
    every = [(START + timedelta(minutes=5 * k), 120.0 + k % 7) for k in range(14 * 288)]
    insert(conn, owner, [reading for k, reading in enumerate(every) if k % 10])
    found = read(conn, owner, START, START + 14 * DAY)
    assert (found.readings, found.expected_readings, found.days_of_wear) == (3628, 4032, 14)
    assert found.sensor_active_percent == pytest.approx(100 * 3628 / 4032)
    assert found.sufficient is True
    assert found.reason.startswith("representative: 14.0 days with the sensor active 90.0 %")
    # Thirteen days are too few, however complete.
    short = read(conn, owner, START, START + 13 * DAY)
    assert (short.sufficient, short.reason) == (False, "the period covers 13.0 days, and at least 14 are recommended")


def test_the_interval_is_the_sensors(conn: Connection, owner: Owner) -> None:
    # A sensor that stores a reading every 15 minutes (FreeStyle Libre 2's history) is fully active at 96 a day.
    insert(conn, owner, [(START + timedelta(minutes=15 * k), 110.0) for k in range(96)])
    found = read(conn, owner)
    assert (found.reading_interval_seconds, found.expected_readings, found.sensor_active_percent) == (900, 96, 100)


def test_a_period_without_readings_has_no_figures(conn: Connection, owner: Owner) -> None:
    found = read(conn, owner)
    assert (found.readings, found.reading_interval_seconds, found.sensor_active_percent, found.days_of_wear) == (
        0, 300, 0, 0,
    )  # fmt: skip
    assert (found.mean_mg_dl, found.cv_percent, found.gmi_percent, found.in_range_percent) == (None,) * 4
    assert (found.sufficient, found.reason) == (False, "no CGM readings in the period")
    with pytest.raises(Exception, match="needs at least 2"):
        summary.bundle(found, owner.person, START)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (START, START, "the period is reversed or empty"),
        (START + DAY, START, "the period is reversed or empty"),
        (START, START + timedelta(days=91), "the period is 91 days long: a summary covers at most 90 days"),
        (datetime.now(UTC) + DAY, datetime.now(UTC) + 2 * DAY, "the period starts in the future"),
    ],
)
def test_a_period_it_cannot_summarise_is_refused(
    conn: Connection, owner: Owner, start: datetime, end: datetime, message: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        read(conn, owner, start, end)


def test_only_the_owner_reads_a_summary(conn: Connection, alice: Owner, make_owner: Callable[[], Owner]) -> None:
    bob = make_owner()
    assert read(conn, alice).readings == 20
    call = "select readings from public.cgm_summary(%s, %s, %s)"
    with (
        pytest.raises(psycopg.errors.NoDataFound, match=f"no person {alice.person} among yours"),
        as_user(conn, bob.user),
    ):
        conn.execute(call, (alice.person, START, START + DAY))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_anon(conn):
        conn.execute(call, (alice.person, START, START + DAY))
    for person in (alice.person, None):  # a worker has no business with it, in the person's scope or none
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege),
            as_worker(conn, person, Purpose.FORECASTING if person else None, "test"),
        ):
            conn.execute(call, (alice.person, START, START + DAY))
    # The function runs with the caller's rights, and pins its search path.
    row = conn.execute(
        """select p.prosecdef, p.proconfig from pg_proc p
           where p.oid = 'public.cgm_summary(uuid, timestamptz, timestamptz)'::regprocedure"""
    ).fetchone()
    assert row == (False, ['search_path=""'])


def test_the_api_answers_the_owner_and_nobody_else(
    database_url: str, alice: Owner, make_owner: Callable[[], Owner]
) -> None:
    bob = make_owner()
    app = create_app(ApiSettings(database_url, TokenVerifier(secret=SECRET), pool_size=1))
    path = f"/v1/persons/{alice.person}/cgm-summary"
    period = {"from": START.isoformat(), "to": (START + DAY).isoformat()}
    with TestClient(app) as client:
        response = client.get(path, params=period, headers=bearer(token(alice.user)))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["person_id"], body["readings"], body["days_of_wear"], body["sufficient"]) == (
            str(alice.person), 20, 2, False,
        )  # fmt: skip
        assert body["in_range_percent"] == pytest.approx(55)
        missing = uuid4()
        theirs = is_problem(client.get(path, params=period, headers=bearer(token(bob.user))), 404)
        absent = is_problem(
            client.get(f"/v1/persons/{missing}/cgm-summary", params=period, headers=bearer(token(bob.user))), 404
        )
        assert theirs["detail"].replace(str(alice.person), "X") == absent["detail"].replace(str(missing), "X")
        mine = bearer(token(alice.user))
        long = is_problem(client.get(path, params={**period, "to": "2027-01-01T00:00:00Z"}, headers=mine), 422)
        assert long["detail"] == "the period is 92 days long: a summary covers at most 90 days."
        reversed_ = is_problem(client.get(path, params={"from": period["to"], "to": period["from"]}, headers=mine), 422)
        assert reversed_["detail"].startswith("the period is reversed or empty")
        naive = is_problem(client.get(path, params={**period, "from": "2026-10-01T00:00:00"}, headers=mine), 422)
        assert naive["detail"] == "from and to need a time zone offset (e.g. Z or +01:00)"
        is_problem(client.get(path, params={"from": period["from"]}, headers=mine), 422)
        is_problem(client.get(path, params=period, headers=bearer(token(None, role="anon"))), 401)
        document = client.get("/openapi.json").json()
        assert "/v1/persons/{person_id}/cgm-summary" in document["paths"]


def test_the_fhir_form_is_the_igs_summary_observation(conn: Connection, alice: Owner) -> None:
    issued = datetime(2026, 11, 1, tzinfo=UTC)
    document = summary.bundle(read(conn, alice), alice.person, issued)
    Bundle.model_validate(document)  # FHIR R4B structure
    assert summary.bundle(read(conn, alice), alice.person, issued) == document  # stable ids
    resources = [entry["resource"] for entry in document["entry"]]
    panel, members = resources[0], resources[1:]
    codes = [resource["code"]["coding"][0] for resource in resources]
    assert {coding["system"] for coding in codes} == {"http://loinc.org"}
    assert [coding["code"] for coding in codes] == [
        "107931-8", "97507-8", "106793-3", "97506-0", "104638-2", "104636-6", "104637-4",
    ]  # fmt: skip
    assert panel["hasMember"] == [{"reference": entry["fullUrl"]} for entry in document["entry"][1:]]
    period = {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}
    assert {json.dumps(resource["effectivePeriod"]) for resource in resources} == {json.dumps(period)}
    assert {resource["subject"]["identifier"]["value"] for resource in resources} == {str(alice.person)}
    mean, ranges, gmi, cv, wear, active = members
    assert mean["valueQuantity"] == {
        "value": round(statistics.mean(VALUES), 1), "unit": "mg/dL", "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }  # fmt: skip
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"]) for c in ranges["component"]] == [
        ("104642-4", 10), ("104641-6", 10), ("97510-2", 55), ("104640-8", 15), ("104639-0", 10),
    ]  # fmt: skip
    assert {c["valueQuantity"]["code"] for c in ranges["component"]} == {"%"}
    assert gmi["valueQuantity"]["value"] == round(3.31 + 0.02392 * statistics.mean(VALUES), 2)
    assert (gmi["valueQuantity"]["code"], cv["valueQuantity"]["code"], active["valueQuantity"]["code"]) == ("%",) * 3
    assert (wear["valueQuantity"]["value"], wear["valueQuantity"]["code"]) == (2, "d")
    assert active["valueQuantity"]["value"] == round(100 * 20 / 288, 2)
    assert forbidden_words(json.dumps(document)) == []


def test_the_command_line_writes_the_summary_and_its_fhir_form(
    database_url: str, alice: Owner, owner: Owner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    period = ["--from", START.isoformat(), "--to", (START + DAY).isoformat(), "--database-url", database_url]
    assert main(["summary", "--person", str(alice.person), *period]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert (printed["readings"], printed["days_of_wear"], printed["sufficient"]) == (20, 2, False)
    out = tmp_path / "summary.json"
    assert main(["summary", "--person", str(alice.person), "--fhir", "--out", str(out), *period]) == 0
    Bundle.model_validate_json(out.read_text())
    assert main(["summary", "--person", str(owner.person), *period]) == 3  # no readings: nothing to show
    capsys.readouterr()
    assert main(["summary", "--person", str(alice.person), "--user", str(owner.user), *period]) == 5
    assert f"no person {alice.person} among yours" in capsys.readouterr().err
    naive = ["--from", "2026-10-01T00:00:00", "--to", (START + DAY).isoformat(), "--database-url", database_url]
    assert main(["summary", "--person", str(alice.person), *naive]) == 2
    assert "needs a time zone offset" in capsys.readouterr().err
