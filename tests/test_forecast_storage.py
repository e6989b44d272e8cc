"""The forecast origin migration on a database that has forecasts: every row is kept, anchors once per forecast.

A database is migrated up to the migration before 20261206100000_forecast_origin.sql, given forecasts in the
old shape (points with their provenance, anchors per point, an outcome and a feedback), then migrated to the
end; the forecasts read back the same through the API's reads.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import psycopg

from glucokit.api import reads
from glucokit.db.sessions import as_user
from glucokit.project import PROJECT_DIR
from glucokit.tooling import migrate

FIRST_NEW = "20261206100000"
ORIGIN = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

OLD_SHAPE = """
insert into auth.users (id) values (%(user)s);
insert into public.person (id, owner_id) values (%(person)s, %(user)s);
insert into public.ml_model (id, person_id, version, algorithm, data_from, data_to)
values (%(model)s, %(person)s, '1.2.0', 'ridge', %(origin)s - interval '7 days', %(origin)s - interval '1 hour');
insert into public.observation (id, person_id, code, value, unit, effective_at, source_system, source_id)
select md5(%(person)s::text || n)::uuid, %(person)s, '99504-3', 100 + n, 'mg/dL',
  %(origin)s - make_interval(mins => 5 * (11 - n)), 'urn:test', 'r' || n
from generate_series(0, 11) as n;
insert into public.prediction (id, person_id, model_id, generated_at, target_at, horizon_minutes, value_mg_dl,
  lower_mg_dl, upper_mg_dl, coverage, disclaimer_version, model_version, data_from, data_to, code_version)
select md5(%(person)s::text || 'p' || o || '-' || h)::uuid, %(person)s, %(model)s,
  %(origin)s + make_interval(mins => 5 * o), %(origin)s + make_interval(mins => 5 * o + h), h, 120 + h, 110, 140 + h,
  0.8, 'v1', '1.2.0', %(origin)s - interval '7 days', %(origin)s - interval '1 hour', '0.9.0'
from generate_series(0, 1) as o, generate_series(5, 60, 5) as h;
insert into public.prediction_source (prediction_id, person_id, observation_id, observation_effective_at)
select p.id, p.person_id, o.id, o.effective_at
from public.prediction p join public.observation o on o.person_id = p.person_id;
insert into public.observation (id, person_id, code, value, unit, effective_at, source_system, source_id)
values (md5(%(person)s::text || 'target')::uuid, %(person)s, '99504-3', 131, 'mg/dL',
  %(origin)s + interval '30 minutes', 'urn:test', 'target');
insert into public.forecast_outcome (prediction_id, person_id, model_id, target_at, horizon_minutes,
  predicted_mg_dl, observed_mg_dl, observation_id, observed_at, error_mg_dl, inside_band)
select p.id, p.person_id, p.model_id, p.target_at, 30, 150, 131, md5(%(person)s::text || 'target')::uuid,
  p.target_at, 19, true
from public.prediction p where p.generated_at = %(origin)s and p.horizon_minutes = 30;
insert into public.forecast_feedback (prediction_id, person_id, user_id, rating)
select p.id, p.person_id, %(user)s, 'up'
from public.prediction p where p.generated_at = %(origin)s and p.horizon_minutes = 5;
"""


def test_the_migration_keeps_every_forecast_and_anchors_each_once(
    new_database: Callable[[], str], tmp_path: Path
) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(PROJECT_DIR / "supabase", workdir / "supabase")
    later = [path for path in (workdir / "supabase" / "migrations").iterdir() if path.name >= FIRST_NEW]
    held = tmp_path / "later"
    held.mkdir()
    for path in later:
        shutil.move(path, held / path.name)
    url = new_database()
    migrate.migrate(url, workdir=workdir)
    user, person, model = uuid4(), uuid4(), uuid4()
    with psycopg.connect(url) as conn:
        for statement in OLD_SHAPE.split(";\n")[:-1]:
            conn.execute(statement.encode(), {"user": user, "person": person, "model": model, "origin": ORIGIN})
        conn.commit()
        old_points = conn.execute("select id, horizon_minutes from public.prediction order by id").fetchall()
    for path in later:
        shutil.move(held / path.name, path)
    migrate.migrate(url, workdir=workdir)

    with psycopg.connect(url) as conn:
        counts = conn.execute(
            "select (select count(*) from public.forecast), (select count(*) from public.prediction),"
            " (select count(*) from public.prediction_source)"
        ).fetchone()
        assert counts == (2, 24, 24)  # 2 forecasts, their 24 points, 12 anchors each (was 288 rows)
        assert conn.execute("select id, horizon_minutes from public.prediction order by id").fetchall() == old_points
        provenance = conn.execute(
            "select distinct owner_id, model_version, coverage, disclaimer_version, code_version from public.forecast"
        ).fetchall()
        assert provenance == [(user, "1.2.0", 0.8, "v1", "0.9.0")]
        outcome = conn.execute(
            "select owner_id, model_version, coverage, generated_at from public.forecast_outcome"
        ).fetchall()
        assert outcome == [(user, "1.2.0", 0.8, ORIGIN)]
        feedback = conn.execute("select model_id, model_version from public.forecast_feedback").fetchall()
        assert feedback == [(model, "1.2.0")]
        with as_user(conn, user):
            curve = reads.latest_curve(conn, person)
            assert [point.horizon_minutes for point in curve] == list(range(5, 65, 5))
            assert {point.generated_at for point in curve} == {ORIGIN + timedelta(minutes=5)}
            read = reads.point(conn, curve[0].id)
            assert read is not None
            assert len(read[1]) == 12
            summary = conn.execute(
                "select outcomes, rmse_mg_dl from public.model_daily_accuracy where horizon_minutes = 30"
            ).fetchall()
            assert summary == [(1, 19.0)]
        partitions = conn.execute(
            "select tableoid::regclass::text, count(*) from public.prediction group by 1"
        ).fetchall()
        assert partitions == [("partitions.prediction_d20261120", 24)]  # each existing day got its partition
