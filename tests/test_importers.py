"""Importers (Nightscout, Dexcom Clarity, LibreView, Apple Health) against the real database: every record through
ingest's validation, quarantine and idempotency; malformed rows reported with their row and reason; local times
in the person's zone with DST; a Nightscout site pulled from a local HTTP server; Apple Health streamed."""

from __future__ import annotations

import http.server
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import orjson
import pytest
from fastapi.testclient import TestClient

from api_fixtures import bearer, is_problem, token
from glucokit.cli.main import main
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.fhir import importers
from glucokit.fhir.importers import apple_health, libreview, nightscout
from glucokit.fhir.importers.common import local_instant, person_time_zone
from glucokit.fhir.ingest import Ingest, IngestReport
from owners import Owner, quarantined, rows

FIXTURES = Path(__file__).parent / "fixtures" / "imports"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def berliner(owner: Owner, database_url: str) -> Owner:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(database_url) as admin:
        admin.execute("update public.person set time_zone = 'Europe/Berlin' where id = %s", (owner.person,))
    return owner


def run(conn: Connection, owner: Owner, form: importers.Format, name: str) -> IngestReport:
    zone = person_time_zone(conn, owner.user, owner.person)
    with (FIXTURES / name).open("rb") as stream:
        return Ingest([conn], user_id=owner.user, person_id=owner.person).resources(
            importers.records(form, stream, zone), source=name
        )


def problems(report: IngestReport) -> dict[str, str]:
    return {rejection.position: "; ".join(map(str, rejection.problems)) for rejection in report.rejections}


# --- Local times ------------------------------------------------------------------------------


def test_a_skipped_local_time_is_refused_and_a_repeated_one_takes_its_first_occurrence() -> None:
    assert local_instant(datetime(2024, 3, 31, 2, 30), BERLIN) == (
        "2024-03-31T02:30:00 does not exist in Europe/Berlin (the clocks skipped it when daylight saving began)"
    )
    repeated = local_instant(datetime(2024, 10, 27, 2, 30), BERLIN)
    assert isinstance(repeated, datetime)
    assert repeated.astimezone(UTC) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # CEST, before the change


def test_libreview_times_follow_the_locale() -> None:
    assert libreview.parse_time("30-03-2024 08:15") == datetime(2024, 3, 30, 8, 15)
    assert libreview.parse_time("03-30-2024 01:15 PM") == datetime(2024, 3, 30, 13, 15)
    assert libreview.parse_time("03-30-2024 12:05 AM") == datetime(2024, 3, 30, 0, 5)
    assert libreview.parse_time("2024-03-30 08:15") == datetime(2024, 3, 30, 8, 15)
    assert "is not a date and time" in str(libreview.parse_time("32-03-2024 08:30"))


# --- Dexcom Clarity ------------------------------------------------------------------------------


def test_clarity_mg_dl_stores_readings_events_and_reports_each_bad_row(conn: Connection, berliner: Owner) -> None:
    report = run(conn, berliner, "dexcom-clarity", "clarity_mgdl.csv")
    assert problems(report) == {
        "row 9": "valueQuantity.comparator: a value reported as <40 is a bound, not a reading",
        "row 10": "valueQuantity.comparator: a value reported as >400 is a bound, not a reading",
        "row 15": "Glucose Value: 'not-a-number' is not a glucose value in mg/dL",
        "row 16": "Timestamp: 2024-03-31T02:30:00 does not exist in Europe/Berlin "
        "(the clocks skipped it when daylight saving began)",
    }
    assert report.skipped == {"metadata": 5, "calibration": 1, "alert": 1}
    assert (report.entries, report.inserted, report.rejected) == (10, 6, 4)
    stored = rows(conn, berliner, "code, value, unit, effective_at")
    assert [(code, value, unit) for code, value, unit, _ in stored] == [
        ("99504-3", Decimal(105), "mg/dL"),
        ("99504-3", Decimal(112), "mg/dL"),
        ("9059-7", Decimal(45), "g"),
        ("67866001", Decimal("4.5"), "[iU]"),
        ("99504-3", Decimal(140), "mg/dL"),
        ("99504-3", Decimal(130), "mg/dL"),
    ]
    # 08:00 in Berlin in March (CET, +01:00); the repeated 02:30 of October at its first occurrence (CEST).
    assert stored[0][3] == datetime(2024, 3, 30, 7, 0, tzinfo=UTC)
    assert stored[-1][3] == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    # The quarantine keeps each rejected row as it was in the file.
    payloads = {row[0]: row[2] for row in quarantined(conn, berliner)}
    assert payloads[15] == "14,2024-03-30T08:35:00,EGV,,,,iPhone G6,not-a-number,,,,,2500,8XXXXX"


def test_importing_again_changes_nothing(conn: Connection, berliner: Owner) -> None:
    first = run(conn, berliner, "dexcom-clarity", "clarity_mgdl.csv")
    again = run(conn, berliner, "dexcom-clarity", "clarity_mgdl.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, first.inserted)
    assert len(rows(conn, berliner)) == first.inserted


def test_clarity_mmol_l_with_a_decimal_comma_is_stored_in_mg_dl(conn: Connection, berliner: Owner) -> None:
    report = run(conn, berliner, "dexcom-clarity", "clarity_mmol.csv")
    assert problems(report) == {"row 5": "valueQuantity.comparator: a value reported as <2.2 is a bound, not a reading"}
    assert rows(conn, berliner, "code, value, original_value, original_unit") == [
        ("105272-9", Decimal("5.8") * Decimal("18.016"), Decimal("5.8"), "mmol/L"),
        ("105272-9", Decimal("6.1") * Decimal("18.016"), Decimal("6.1"), "mmol/L"),
    ]


def test_a_file_that_is_no_clarity_export_is_told_so(conn: Connection, berliner: Owner) -> None:
    report = run(conn, berliner, "dexcom-clarity", "libreview_mmol.csv")
    assert report.stored == 0
    assert problems(report)["row 1"].startswith("(header): not a Dexcom Clarity export")


# --- LibreView ----------------------------------------------------------------------------------


def test_libreview_mmol_l_european_locale(conn: Connection, berliner: Owner) -> None:
    report = run(conn, berliner, "libreview", "libreview_mmol.csv")
    assert problems(report) == {
        "row 9": "Device Timestamp: 2024-03-31T02:15:00 does not exist in Europe/Berlin "
        "(the clocks skipped it when daylight saving began)",
        "row 10": "Device Timestamp: '32-03-2024 08:30' is not a date and time (day is out of range for month)",
    }
    assert report.skipped == {"record type 6": 1}
    assert rows(conn, berliner, "code, original_value") == [
        ("105272-9", Decimal("5.8")),
        ("105272-9", Decimal("6.2")),
        ("105272-9", Decimal("6.4")),
        ("67866001", None),
        ("9059-7", None),
        ("15074-8", Decimal("6.6")),
    ]


def test_libreview_us_locale_in_mg_dl(conn: Connection, berliner: Owner) -> None:
    report = run(conn, berliner, "libreview", "libreview_us_mgdl.csv")
    assert (report.inserted, report.rejected) == (3, 0)
    stored = rows(conn, berliner, "value, effective_at")
    assert stored[1] == (Decimal(150), datetime(2024, 3, 30, 12, 15, tzinfo=UTC))


# --- Nightscout -----------------------------------------------------------------------------------


def test_nightscout_entries_file(conn: Connection, owner: Owner) -> None:
    report = run(conn, owner, "nightscout", "nightscout_entries.json")
    assert problems(report) == {
        "entry 2": "sgv: 39 is a Nightscout sensor code (LOW, or a sensor error), not a reading: nothing to store",
        "entry 5": "_id: missing: Nightscout's _id makes the import idempotent",
        "entry 6": "sgv: expected a glucose value in mg/dL, got 'high'",
    }
    assert report.skipped == {"calibration": 1}
    assert rows(conn, owner, "source_id, code, value, device") == [
        ("65f0a1", "99504-3", Decimal(110), "xDrip-DexcomG6"),
        ("65f0a2", "99504-3", Decimal(118), "xDrip-DexcomG6"),
        ("65f0a5", "2339-0", Decimal(121), "Contour"),
    ]


def test_nightscout_treatments_file(conn: Connection, owner: Owner) -> None:
    report = run(conn, owner, "nightscout", "nightscout_treatments.json")
    assert problems(report) == {"entry 3": "created_at: '2024-03-30T12:00:00' has no time zone"}
    assert report.skipped == {"treatment Temp Basal": 1}
    assert rows(conn, owner, "source_id, code, value") == [
        ("t1/carbs", "9059-7", Decimal(45)),
        ("t1/insulin", "67866001", Decimal("4.5")),
        ("t2/insulin", "67866001", Decimal("1.5")),
    ]


def test_malformed_nightscout_json_keeps_the_entries_before_it(conn: Connection, owner: Owner, tmp_path: Path) -> None:
    broken = tmp_path / "entries.json"
    broken.write_bytes((FIXTURES / "nightscout_entries.json").read_bytes()[:400])
    with broken.open("rb") as stream:
        report = Ingest([conn], user_id=owner.user, person_id=owner.person).resources(
            nightscout.records(stream), source="entries.json"
        )
    assert report.stored == 2
    assert report.rejections[-1].position == "document"
    assert "malformed JSON" in str(report.rejections[-1])


# A Nightscout site on 127.0.0.1: /api/v1/{entries,treatments}.json with find[date][$gt]/$lte and count, newest first.
SITE_ENTRIES: list[dict[str, Any]] = [
    {"_id": f"e{minute}", "sgv": 100 + minute, "date": 1711785600000 + minute * 60_000, "type": "sgv"}
    for minute in range(0, 600, 5)
]
SITE_TREATMENTS: list[dict[str, Any]] = [
    {"_id": "t1", "eventType": "Meal Bolus", "created_at": "2024-03-30T09:00:00.000Z", "carbs": 30}
]
TOKEN = "readable-0123456789abcdef"


class _Site(http.server.BaseHTTPRequestHandler):
    requests: list[dict[str, list[str]]] = []  # noqa: RUF012 - the tests read what the site was asked

    def do_GET(self) -> None:
        url = urlparse(self.path)
        asked = parse_qs(url.query)
        type(self).requests.append(asked)
        if asked.get("token") != [TOKEN]:
            self.send_response(401)
            self.end_headers()
            return
        count = int(asked["count"][0])
        if url.path == "/api/v1/entries.json":
            low, high = int(asked["find[date][$gt]"][0]), int(asked["find[date][$lte]"][0])
            found = [entry for entry in SITE_ENTRIES if low < entry["date"] <= high]
            found.sort(key=lambda entry: -entry["date"])
        else:
            low_text, high_text = asked["find[created_at][$gt]"][0], asked["find[created_at][$lte]"][0]
            found = [item for item in SITE_TREATMENTS if low_text < item["created_at"] <= high_text]
        body = orjson.dumps(found[:count])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(nightscout, "PAGE", 50)  # pages fill, so windows must split
    _Site.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def pull(conn: Connection, owner: Owner, url: str, until: datetime) -> IngestReport:
    since = nightscout.newest(conn, owner.user, owner.person, nightscout.ENTRIES) or datetime(2024, 3, 29, tzinfo=UTC)
    site = nightscout.Site(url, TOKEN)
    try:
        return Ingest([conn], user_id=owner.user, person_id=owner.person).resources(
            site.records("entries", since, until), source=site.url
        )
    finally:
        site.close()


def test_a_pull_pages_by_date_and_resumes_after_the_newest_stored(conn: Connection, owner: Owner, site: str) -> None:
    first = pull(conn, owner, site, until=datetime(2024, 3, 30, 13, 0, tzinfo=UTC))
    assert (first.inserted, first.rejected) == (61, 0)  # 08:00-13:00, 5-minute readings
    assert all(asked["count"] == ["50"] for asked in _Site.requests)
    _Site.requests.clear()
    resumed = pull(conn, owner, site, until=datetime(2024, 3, 30, 18, 0, tzinfo=UTC))
    assert (resumed.inserted, resumed.unchanged) == (59, 0)
    # It asked from the newest stored reading (13:00) on, not from the start again.
    assert _Site.requests[0]["find[date][$gt]"] == [str(1711785600000 + 300 * 60_000)]
    stored = rows(conn, owner, "source_id")
    assert len(stored) == len(SITE_ENTRIES) == len({row[0] for row in stored})


def test_a_wrong_token_is_told_without_showing_it(site: str) -> None:
    client = nightscout.Site(site, "wrong")
    with pytest.raises(GlucokitError, match=r"refused the token \(401\)") as refused:
        list(client.records("entries", datetime(2024, 3, 30, tzinfo=UTC), datetime(2024, 3, 31, tzinfo=UTC)))
    assert "wrong" not in str(refused.value)


def test_the_cli_pulls_a_site(
    owner: Owner, database_url: str, site: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NS_TOKEN", TOKEN)
    arguments = ["import", "--database-url", database_url, "--format", "nightscout", "--person", str(owner.person)]
    days = (datetime.now(UTC) - datetime(2024, 3, 30, tzinfo=UTC)).days + 1
    code = main([*arguments, "--url", site, "--token-env", "NS_TOKEN", "--since-days", str(days)])
    assert code == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert f"{len(SITE_ENTRIES) + 1} stored" in out
    assert TOKEN not in out


# --- Apple Health ------------------------------------------------------------------------------------


def test_apple_health_blood_glucose_records(conn: Connection, owner: Owner) -> None:
    report = run(conn, owner, "apple-health", "apple_health_export.xml")
    assert problems(report) == {
        "record 3": "startDate: '2024-03-30 09:15' is not a time YYYY-MM-DD hh:mm:ss ±hhmm",
        "record 4": "unit: 'mg' is neither mg/dL nor mmol/L",
    }
    assert rows(conn, owner, "code, value, original_unit, effective_at, device") == [
        ("99504-3", Decimal(105), None, datetime(2024, 3, 30, 8, 0, tzinfo=UTC), "Dexcom G6"),
        (
            "105272-9",
            Decimal("6.5") * Decimal("18.016"),
            "mmol/L",
            datetime(2024, 3, 30, 8, 10, tzinfo=UTC),
            "Glucose app",
        ),
    ]


def _large_export(path: Path, records: int) -> None:
    other = (
        '<Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Watch" unit="count/min" '
        'startDate="2024-01-01 00:00:00 +0000" endDate="2024-01-01 00:00:00 +0000" value="60">'
        '<MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/></Record>\n'
    )
    with path.open("w") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<HealthData locale="en_US">\n')
        for index in range(records):
            moment = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=5 * index)
            stamp = moment.strftime("%Y-%m-%d %H:%M:%S +0000")
            out.write(other * 3)
            out.write(
                f'<Record type="{apple_health.GLUCOSE_TYPE}" sourceName="Dexcom G6" unit="mg/dL" '
                f'startDate="{stamp}" endDate="{stamp}" value="{100 + index % 80}"/>\n'
            )
        out.write("</HealthData>\n")


def test_apple_health_is_streamed_in_flat_memory(tmp_path: Path) -> None:
    def peak(records: int) -> tuple[int, int]:
        path = tmp_path / f"export-{records}.xml"
        _large_export(path, records)
        tracemalloc.start()
        with path.open("rb") as stream:
            count = sum(1 for record in apple_health.records(stream) if record.resource is not None)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return count, high

    small_count, small_peak = peak(1_000)
    large_count, large_peak = peak(20_000)  # about 10 MB of XML
    assert (small_count, large_count) == (1_000, 20_000)
    # Twenty times the records, and not twice the memory: what is held does not grow with the file.
    assert large_peak < 2 * small_peak + 256 * 1024, (small_peak, large_peak)


# --- The command ---------------------------------------------------------------------------------------


def test_the_cli_imports_a_file_and_exits_3_when_rows_were_rejected(
    berliner: Owner, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["import", "--database-url", database_url, "--person", str(berliner.person)]
    assert main([*arguments, "--format", "dexcom-clarity", str(FIXTURES / "clarity_mgdl.csv")]) == 3
    out = capsys.readouterr().out
    assert "6 stored (6 new, 0 updated, 0 unchanged), 4 rejected and quarantined" in out
    assert "1 alert skipped, 1 calibration skipped, 5 metadata skipped" in out
    assert "row 16: Timestamp: 2024-03-31T02:30:00 does not exist in Europe/Berlin" in out
    assert main([*arguments, "--format", "libreview", str(FIXTURES / "libreview_us_mgdl.csv")]) == 0


def test_the_cli_refuses_a_person_that_is_not_there(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "import", "--database-url", database_url, "--format", "libreview",
            "--person", "00000000-0000-4000-8000-000000000000", str(FIXTURES / "libreview_us_mgdl.csv"),
        ]
    )  # fmt: skip
    assert code == 5
    assert "does not exist" in capsys.readouterr().err


# --- The API route ---------------------------------------------------------------------------------------


def test_the_api_imports_an_export(client: TestClient, berliner: Owner, make_owner: Callable[[], Owner]) -> None:
    path = f"/v1/persons/{berliner.person}/imports/libreview"
    headers = {**bearer(token(berliner.user)), "Content-Type": "text/csv"}
    body = (FIXTURES / "libreview_mmol.csv").read_bytes()
    answer = client.post(path, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["new"], result["rejected"]) == (6, 2)
    assert result["rejections"][0] == {
        "position": "row 9",
        "problems": [
            "Device Timestamp: 2024-03-31T02:15:00 does not exist in Europe/Berlin "
            "(the clocks skipped it when daylight saving began)"
        ],
    }
    again = client.post(path, content=body, headers=headers).json()
    assert (again["new"], again["unchanged"]) == (0, 6)
    wrong_type = client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})
    assert "send a libreview export as text/csv or application/vnd.ms-excel" in is_problem(wrong_type, 415)["detail"]
    # Another user's person is not found, before the body is read; an unknown format is a 422.
    stranger = make_owner()
    other = client.post(path, content=body, headers={**bearer(token(stranger.user)), "Content-Type": "text/csv"})
    is_problem(other, 404)
    unknown = client.post(f"/v1/persons/{berliner.person}/imports/glooko", content=body, headers=headers)
    is_problem(unknown, 422)
