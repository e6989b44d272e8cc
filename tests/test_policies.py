"""The access matrix, proved cell by cell, and the catalog guards that keep the schema honest to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.tooling import policies
from glucokit.tooling.policies import Matrix, Measurement

pytestmark = pytest.mark.full_schema

MATRIX = policies.load()
ANONYMOUS_FENCE = "Anonymous users reach no health data"


@pytest.fixture(scope="module")
def measured(database_url: str) -> Measurement:
    """Every cell's outcome and the WHERE-less checks, by real attempts on the migrated database (rolled back)."""
    with psycopg.connect(database_url) as conn:
        return policies.measure(conn, MATRIX)


def _cells() -> Iterator[Any]:
    for entry, actor, operation in MATRIX.cells():
        yield pytest.param(
            entry.name, actor, operation, entry.expected[actor][operation], id=f"{entry.name}-{actor}-{operation}"
        )


@pytest.mark.parametrize(("target", "actor", "operation", "expected"), list(_cells()))
def test_cell(measured: Measurement, target: str, actor: str, operation: str, expected: str) -> None:
    assert measured.outcomes[(target, actor, operation)] == expected


def test_the_catalog_matches_the_matrix(conn: Connection) -> None:
    assert policies.guard(conn, MATRIX) == []


def test_update_and_delete_without_where_reach_only_what_the_matrix_allows(measured: Measurement) -> None:
    assert measured.leaks == []


# A change to the schema, and problems the guards must report for it (among
# others: a new table in public also gets Supabase's default grants to anon).
DRIFT = [
    (
        "create table public.sneaky (id int primary key)",
        [
            "public.sneaky has row-level security disabled",
            "public.sneaky has no entry in policies/access.toml",
            "public.sneaky has no restrictive policy that keeps anonymous users out (is_anonymous)",
            "anon (or PUBLIC) holds DELETE, INSERT, ",
        ],
    ),
    (
        """create policy "Anyone reads persons" on public.person for select to anon using (true)""",
        ['policy "Anyone reads persons" on public.person lets anon select, which the matrix allows none of its actors'],
    ),
    (
        """create policy "Owners read persons, slowly" on public.person for select to authenticated
           using (owner_id = auth.uid())""",
        [
            'policy "Owners read persons, slowly" on public.person calls auth.uid() once per row: '
            "write (select auth.uid())"
        ],
    ),
    (
        """create policy "Users read models by name" on public.ml_model for select to authenticated
           using (algorithm = (select auth.jwt() ->> 'algorithm'))""",
        ["public.ml_model.algorithm is used by a policy but no index starts with it"],
    ),
    (
        """create policy "Users delete predictions" on public.prediction for delete to authenticated
           using (person_id in (select private.owned_person_ids()))""",
        [
            'policy "Users delete predictions" on public.prediction lets authenticated delete, '
            "which the matrix allows none of its actors"
        ],
    ),
    (
        """create policy "Everyone reads every bucket" on storage.objects for select to authenticated using (true)""",
        ['policy "Everyone reads every bucket" on storage.objects applies to every bucket'],
    ),
    (
        "create function public.peek() returns bigint language sql security definer as $$ select 1::bigint $$",
        [
            "anon (or PUBLIC) holds EXECUTE on public.peek()",
            "security-definer function public.peek() does not pin search_path",
            "security-definer function public.peek() is outside the private schema",
        ],
    ),
    (
        "create function private.peek() returns bigint language sql security definer set search_path = '' "
        "as $$ select 1::bigint $$",
        ["anon (or PUBLIC) holds EXECUTE on private.peek()"],
    ),
    ("grant select on public.prediction to anon", ["anon (or PUBLIC) holds SELECT on public.prediction"]),
    (
        "create function public.peek_invoker() returns bigint language sql set search_path = '' "
        "as $$ select 1::bigint $$; revoke all on function public.peek_invoker() from public, anon; "
        "grant execute on function public.peek_invoker() to authenticated",
        ["function public.peek_invoker is reachable through the Data API but has no entry in policies/access.toml"],
    ),
    (
        "create view public.feedback_counts with (security_invoker = true) as "
        "select person_id, count(*) from public.forecast_feedback group by person_id; "
        "revoke all on public.feedback_counts from anon; grant select on public.feedback_counts to authenticated",
        ["view public.feedback_counts is reachable through the Data API but has no entry in policies/access.toml"],
    ),
    (
        """drop policy "Anonymous users reach no health data" on public.observation""",
        ["public.observation has no restrictive policy that keeps anonymous users out (is_anonymous)"],
    ),
    (
        "grant update (display_name) on public.person to anon",
        ["anon (or PUBLIC) holds UPDATE on public.person.display_name"],
    ),
    (
        "create view public.latest as select * from public.prediction",
        ["view public.latest is not security_invoker", "anon (or PUBLIC) holds DELETE, INSERT, "],
    ),
]


@pytest.mark.parametrize(("change", "problems"), DRIFT, ids=[problems[0] for _, problems in DRIFT])
def test_guards_catch_drift(conn: Connection, change: str, problems: list[str]) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute(change.encode())
        found = policies.guard(conn, MATRIX)
    for problem in problems:
        assert any(line.startswith(problem) for line in found), (problem, found)


def test_a_table_in_the_matrix_but_not_in_the_database_is_drift(conn: Connection, tmp_path: Path) -> None:
    text = policies.MATRIX_FILE.read_text().replace('[tables."public.person"]', '[tables."public.persons"]')
    text = text.replace('[tables."public.person".probe]', '[tables."public.persons".probe]')
    (tmp_path / "access.toml").write_text(text)
    problems = policies.guard(conn, policies.load(tmp_path / "access.toml"))
    assert "public.persons is in policies/access.toml but not in the database" in problems
    assert "public.person has no entry in policies/access.toml" in problems


def test_a_mistake_in_the_matrix_names_its_place(tmp_path: Path) -> None:
    broken = tmp_path / "access.toml"
    broken.write_text(
        policies.MATRIX_FILE.read_text().replace(
            'other_user = { select = "filtered", insert = "refused", update = "filtered", delete = "filtered" }',
            'other_user = { select = "hidden", insert = "refused", update = "filtered", delete = "filtered" }',
            1,
        )
    )
    with pytest.raises(GlucokitError) as raised:
        policies.load(broken)
    assert str(raised.value) == (
        "access.toml: tables.public.person.other_user.select: 'hidden' is not one of allowed, filtered, refused"
    )


def test_the_pgtap_file_is_generated_from_the_matrix() -> None:
    assert policies.PGTAP_FILE.read_text() == policies.pgtap_file(MATRIX), (
        "supabase/tests/database/access_matrix.test.sql is out of date: run `glucokit policies pgtap`"
    )


def test_the_report_in_docs_is_current(measured: Measurement) -> None:
    assert policies.REPORT_FILE.read_text() == policies.report(MATRIX, measured), (
        "docs/policies.md is out of date: run `glucokit policies report --write`"
    )


def test_the_report_shows_a_cell_that_differs(measured: Measurement) -> None:
    wrong = Measurement(
        outcomes=dict(measured.outcomes) | {("public.prediction", "other_user", "select"): "allowed"},
        leaks=["public.person: other_user reaches person A's rows"],
    )
    assert wrong.mismatches(MATRIX) == [
        "public.prediction: other_user select is allowed, the matrix says filtered",
        "public.person: other_user reaches person A's rows",
    ]
    text = policies.report(MATRIX, wrong)
    total = sum(1 for _ in MATRIX.cells())
    blanket = sum(1 for _ in policies.blanket_cells(MATRIX))
    assert f"{total} cells, {total - 1} as expected, 1 not." in text
    assert f"{blanket} checked, 1 reach person A's rows.\n- public.person: other_user reaches person A's rows" in text
    assert "| other_user | **allowed** (expected filtered) | refused | refused | refused |" in text


def test_every_cell_is_counted(measured: Measurement) -> None:
    matrix: Matrix = MATRIX
    # Tables and buckets have four operations, functions one (execute), views one (select).
    assert len(measured.outcomes) == sum(len(entry.operations) for entry in matrix.entries) * len(matrix.actors)
    assert {entry.kind for entry in matrix.entries} == {"table", "bucket", "function", "view"}


def test_every_policy_is_load_bearing(conn: Connection) -> None:
    """Loosening any one of the kit's policies to `true` must turn a cell or a WHERE-less check red."""
    kit_policies = conn.execute(
        """select schemaname, tablename, policyname, cmd from pg_policies
           where schemaname = 'public'
              or (schemaname = 'storage' and tablename = 'objects' and concat(qual, with_check) like '%%''models''%%')
           order by 1, 2, 3"""
    ).fetchall()
    assert len(kit_policies) >= 20
    clauses = {"SELECT": "using (true)", "DELETE": "using (true)", "INSERT": "with check (true)"}
    unnoticed = []
    for schema, table, policy, command in kit_policies:
        loosen = (
            f'alter policy "{policy}" on {schema}.{table} {clauses.get(str(command), "using (true) with check (true)")}'
        )
        with conn.transaction(force_rollback=True):
            conn.execute(loosen.encode())
            if not policies.measure(conn, MATRIX).mismatches(MATRIX):
                unnoticed.append(f"{schema}.{table}: {policy}")
    assert sorted(unnoticed) == sorted(SHADOWED), "\n".join(unnoticed)


# Policies another policy shadows on purpose (defence in depth), each with what holds the line without it:
SHADOWED = [
    # experiment and its variants are read through experiment_assignment, whose own fence keeps anonymous users out.
    f"public.experiment: {ANONYMOUS_FENCE}",
    f"public.experiment_variant: {ANONYMOUS_FENCE}",
    # The restrictive "models: users read their own folder at most" holds the owner's folder whatever permissive
    # policies other buckets add; this permissive one grants the read at all.
    "storage.objects: Users can read model files under their own folder",
]


def test_the_anonymous_fences_together_are_load_bearing(conn: Connection) -> None:
    """Each table's fence may be shadowed by another's, but loosening them all must open something."""
    fenced = conn.execute(
        "select schemaname, tablename from pg_policies where policyname = %s", (ANONYMOUS_FENCE,)
    ).fetchall()
    assert len(fenced) >= 20
    with conn.transaction(force_rollback=True):
        for schema, table in fenced:
            conn.execute(
                f'alter policy "{ANONYMOUS_FENCE}" on {schema}.{table} using (true) with check (true)'.encode()
            )
        opened = policies.measure(conn, MATRIX).mismatches(MATRIX)
    assert any("anonymous_owner" in str(mismatch) for mismatch in opened), opened
