"""The access matrix: who may do what, proved by real attempts and guarded in the catalog.

``policies/access.toml`` states, for every exposed table, function and view,
every storage bucket and the Realtime messages, the owner path and the
expected outcome of each operation by each actor on a row of person A. This
module

- loads and validates the matrix;
- measures every cell: it builds the probe world (``policies/world.sql``) in a
  transaction that is rolled back, becomes each actor, runs each probe and
  names the outcome; in the same transaction it runs each actor's UPDATE and
  DELETE without WHERE, which a row-targeted probe cannot stand in for
  (``measure``);
- writes the same checks as a pgTAP file for ``pg_prove`` / ``supabase test db``
  (``pgtap_file``) and as a markdown report (``report``);
- guards the catalog against drift from the matrix (``guard``).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from uuid import UUID, uuid5

from psycopg import sql

from glucokit.db.queries import query
from glucokit.db.sessions import (
    Connection,
    Scope,
    Statement,
    become_role,
    become_worker,
    user_claims,
)
from glucokit.errors import GlucokitError
from glucokit.privacy.consent import Purpose
from glucokit.project import PROJECT_DIR, SUPABASE_DIR

POLICIES_DIR = PROJECT_DIR / "policies"
MATRIX_FILE = POLICIES_DIR / "access.toml"
WORLD_FILE = POLICIES_DIR / "world.sql"
PGTAP_FILE = SUPABASE_DIR / "tests" / "database" / "access_matrix.test.sql"
REPORT_FILE = PROJECT_DIR / "docs" / "policies.md"

OUTCOMES = ("allowed", "filtered", "refused")
OPERATIONS = ("select", "insert", "update", "delete")
# The sections of the matrix file: the kind of object each holds, and the operations proved on it.
SECTIONS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "tables": ("table", OPERATIONS),
    "buckets": ("bucket", OPERATIONS),
    "functions": ("function", ("execute",)),
    "views": ("view", ("select",)),
}
# Which matrix actors a database role stands for.
ROLE_ACTORS: Mapping[str, tuple[str, ...]] = {
    "anon": ("anon",),
    "authenticated": ("owner", "other_user", "owner_aal1", "anonymous_owner"),
    "glucokit_worker": ("worker_in_scope", "worker_other_scope", "worker_unscoped", "worker_forged_scope"),
    "service_role": ("service_role",),
}
ACTORS = tuple(actor for actors in ROLE_ACTORS.values() for actor in actors)
# The setting a cell leaves its outcome in, for whoever reads it next (measure, pgTAP).
_OUTCOME_SETTING = "glucokit.probe_outcome"
_BASELINE_SETTING = "glucokit.probe_baseline"
# What the worker_forged_scope actor sets by hand to name person A: the settings that held the
# worker scope before migration 20261205120000, and the claims of a Storage token naming person A.
_FORGED_SETTINGS = ("glucokit.worker_person_id", "glucokit.worker_purpose", "request.jwt.claims")


@dataclass(frozen=True)
class Entry:
    """One table or bucket of the matrix."""

    name: str
    kind: str  # "table", "bucket", "function" or "view"
    operations: tuple[str, ...]
    owner_path: str
    expected: Mapping[str, Mapping[str, str]]
    probes: Mapping[str, str]


@dataclass(frozen=True)
class Matrix:
    actors: tuple[str, ...]
    operations: tuple[str, ...]
    entries: tuple[Entry, ...]

    def cells(self) -> Iterator[tuple[Entry, str, str]]:
        for entry in self.entries:
            for actor in self.actors:
                for operation in entry.operations:
                    yield entry, actor, operation

    def names(self, kind: str) -> set[str]:
        return {entry.name for entry in self.entries if entry.kind == kind}

    def tables(self) -> set[str]:
        return self.names("table")

    def bucket(self, name: str) -> Entry | None:
        return next((e for e in self.entries if e.kind == "bucket" and e.name == name), None)


def load(path: Path = MATRIX_FILE) -> Matrix:
    """Read and validate the matrix; every mistake is reported with its place in the file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise GlucokitError(f"{path.name}: {exc}") from exc
    actors = tuple(data.get("actors", ()))
    operations = tuple(data.get("operations", ()))
    if actors != ACTORS:
        raise GlucokitError(f"{path.name}: actors must be {list(ACTORS)}, found {list(actors)}")
    if operations != OPERATIONS:
        raise GlucokitError(f"{path.name}: operations must be {list(OPERATIONS)}, found {list(operations)}")
    entries = []
    for section, (kind, kind_operations) in SECTIONS.items():
        for name, spec in data.get(section, {}).items():
            where = f"{path.name}: {section}.{name}"
            if not isinstance(spec.get("owner_path"), str) or not spec["owner_path"]:
                raise GlucokitError(f"{where}: owner_path is missing")
            for actor in actors:
                for operation in kind_operations:
                    outcome = spec.get(actor, {}).get(operation)
                    if outcome not in OUTCOMES:
                        raise GlucokitError(
                            f"{where}.{actor}.{operation}: {outcome!r} is not one of {', '.join(OUTCOMES)}"
                        )
                if set(spec[actor]) != set(kind_operations):
                    raise GlucokitError(
                        f"{where}.{actor}: unknown operation(s) {sorted(set(spec[actor]) - set(kind_operations))}"
                    )
            probes = spec.get("probe", {})
            if set(probes) != set(kind_operations):
                raise GlucokitError(
                    f"{where}.probe: needs exactly one statement for each of {', '.join(kind_operations)}"
                )
            entries.append(
                Entry(
                    name=name,
                    kind=kind,
                    operations=kind_operations,
                    owner_path=spec["owner_path"],
                    expected={actor: dict(spec[actor]) for actor in actors},
                    probes=dict(probes),
                )
            )
    return Matrix(actors=actors, operations=operations, entries=tuple(entries))


# -----------------------------------------------------------------------------
# The probe world
# -----------------------------------------------------------------------------
_WORLD_NAMESPACE = UUID("0b8e7f55-3c1d-4a57-9a55-6f7d2c9e4a10")
# Fixed times, so that the generated pgTAP file and report never change by themselves.
_OBSERVED_AT = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ProbePerson:
    """One user, their person, and the ids of that person's rows in the probe world."""

    label: str
    user: UUID
    person: UUID
    observation: UUID
    second_observation: UUID
    run: UUID
    failed_run: UUID
    model: UUID
    prediction: UUID

    observation_at = _OBSERVED_AT
    second_observation_at = _OBSERVED_AT + timedelta(minutes=5)

    @property
    def folder(self) -> str:
        return f"{self.user}/{self.person}/glucose-forecast/v1.0.0/"

    def params(self) -> dict[str, object]:
        """Placeholder values for policies/world.sql and the probes."""
        return {
            "user": self.user,
            "email": f"probe-{self.user}@example.org",
            "person": self.person,
            "observation": self.observation,
            "observation_at": self.observation_at,
            "second_observation": self.second_observation,
            "second_observation_at": self.second_observation_at,
            "run": self.run,
            "failed_run": self.failed_run,
            "model": self.model,
            "prediction": self.prediction,
            "folder": self.folder,
            "earlier": _OBSERVED_AT - timedelta(days=7),
            "later": _OBSERVED_AT + timedelta(minutes=10),
        }


@dataclass(frozen=True)
class ProbeWorld:
    a: ProbePerson
    b: ProbePerson


def probe_world(namespace: str = "policy-matrix") -> ProbeWorld:
    """Persons A and B with stable ids; another namespace gives another, disjoint world."""

    def person(label: str) -> ProbePerson:
        def uid(field: str) -> UUID:
            return uuid5(_WORLD_NAMESPACE, f"{namespace}/{label}/{field}")

        return ProbePerson(
            label=label,
            user=uid("user"),
            person=uid("person"),
            observation=uid("observation"),
            second_observation=uid("second_observation"),
            run=uid("run"),
            failed_run=uid("failed_run"),
            model=uid("model"),
            prediction=uid("prediction"),
        )

    return ProbeWorld(a=person("a"), b=person("b"))


def render(template: str, params: Mapping[str, object]) -> sql.Composed:
    """A statement with its {placeholders} replaced by SQL literals."""
    try:
        return sql.SQL(template).format(**{name: sql.Literal(value) for name, value in params.items()})
    except (KeyError, IndexError, ValueError) as exc:
        raise GlucokitError(f"bad placeholder in {template!r}: {exc}") from exc


def world_statements(world: ProbeWorld) -> list[sql.Composed]:
    template = WORLD_FILE.read_text()
    return [render(template, person.params()) for person in (world.a, world.b)]


def _attempt_function() -> str:
    return files("glucokit.tooling").joinpath("sql/policy_attempt.sql").read_text()


def _signed_in(person: ProbePerson, aal: str, *, anonymous: bool = False) -> dict[str, object]:
    """The claims of a Supabase access token: assurance level aal1 or aal2, and whether the sign-in was anonymous."""
    return {**user_claims(person.user), "aal": aal, "is_anonymous": anonymous}


def _become(actor: str, world: ProbeWorld) -> list[Statement]:
    if actor == "anon":
        return [become_role("anon", {"role": "anon"})]
    users = {
        "owner": _signed_in(world.a, "aal2"),
        "other_user": _signed_in(world.b, "aal2"),
        "owner_aal1": _signed_in(world.a, "aal1"),
        "anonymous_owner": _signed_in(world.a, "aal1", anonymous=True),
    }
    if actor in users:
        return [become_role("authenticated", users[actor])]
    if actor == "worker_forged_scope":
        return [*become_worker(None), _forged_scope(world.a)]
    if actor.startswith("worker_"):
        person = {"worker_in_scope": world.a.person, "worker_other_scope": world.b.person}.get(actor)
        return become_worker(None if person is None else Scope(person, Purpose.TRAINING, "access matrix probe"))
    if actor == "service_role":
        return [become_role("service_role", {"role": "service_role"})]
    raise GlucokitError(f"unknown actor {actor!r}")


def _forged_scope(person: ProbePerson) -> sql.Composed:
    claims = {"role": "glucokit_worker", "sub": str(person.user), "glucokit_person_id": str(person.person)}
    values = (str(person.person), "training", json.dumps(claims, sort_keys=True))
    return sql.SQL("select {}").format(
        sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
            for name, value in zip(_FORGED_SETTINGS, values, strict=True)
        )
    )


# Back to the owner role, with no claims and no worker scope, for the next cell of the same
# transaction (the scope would otherwise last until the transaction ends).
_RESET = sql.SQL("reset role; select {}; delete from private.worker_scope where backend_pid = pg_backend_pid()").format(
    sql.SQL(", ").join(sql.SQL("set_config({}, '', true)").format(sql.Literal(name)) for name in _FORGED_SETTINGS)
)


def cell_statements(entry: Entry, actor: str, operation: str, world: ProbeWorld) -> list[Statement]:
    """Become the actor, run the probe (undone), return to the owner role; the outcome stays in a setting."""
    probe = render(entry.probes[operation], world.a.params()).as_string(None)
    attempt = sql.SQL("select set_config({}, pg_temp.policy_attempt({}, {}), true)").format(
        sql.Literal(_OUTCOME_SETTING), sql.Literal(probe), sql.Literal(operation == "select")
    )
    return [*_become(actor, world), attempt, _RESET]


def _prepare(conn: Connection, world: ProbeWorld) -> None:
    """The probe functions and the probe world, in the current transaction."""
    conn.execute(_attempt_function().encode())
    for seed in world_statements(world):
        conn.execute(seed)


def _outcome(conn: Connection) -> str:
    row = conn.execute(sql.SQL("select current_setting({})").format(sql.Literal(_OUTCOME_SETTING))).fetchone()
    return str(row[0]) if row else ""


# -----------------------------------------------------------------------------
# Statements without WHERE
# -----------------------------------------------------------------------------
# Row-targeted probes cannot see a loosened UPDATE or DELETE policy: a WHERE
# clause makes PostgreSQL apply the SELECT policies too. An UPDATE or DELETE
# without WHERE is checked against its own policy only, so each actor that may
# not update (delete) person A's rows also runs the probe without its WHERE,
# and person A's rows are then counted with the owner's rights.
_UPDATE_PROBE = re.compile(r"^\s*update\s+(\S+)\s+set\s+(.+?)\s+where\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)
_DELETE_PROBE = re.compile(r"^\s*delete\s+from\s+(\S+)\s+where\s+(.+?)\s*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class BlanketProbe:
    """A WHERE-less statement, and a count of person A's rows that tells whether it reached them."""

    statement: str
    check: str


def blanket_probe(entry: Entry, operation: str, world: ProbeWorld) -> BlanketProbe:
    # The statements are built from the probes of the reviewed matrix file, never from user input.
    probe = render(entry.probes[operation], world.a.params()).as_string(None)
    if operation == "update" and (found := _UPDATE_PROBE.match(probe)):
        table, assignment, target = found.groups()
        # Person A's rows that carry the probe's new values.
        return BlanketProbe(
            f"update {table} set {assignment}",  # noqa: S608
            f"select count(*) from {table} where ({target}) and ({assignment})",  # noqa: S608
        )
    if operation == "delete" and (found := _DELETE_PROBE.match(probe)):
        table, target = found.groups()
        # Person A's rows that are still there.
        return BlanketProbe(f"delete from {table}", f"select count(*) from {table} where {target}")  # noqa: S608
    raise GlucokitError(f"{entry.name}: the {operation} probe must read `{operation} ... where <person A's rows>`")


def blanket_cells(matrix: Matrix) -> Iterator[tuple[Entry, str, str]]:
    """The actors that may not update (delete) person A's rows, per table: each is checked without WHERE."""
    for entry in matrix.entries:
        for operation in ("update", "delete"):
            if operation not in entry.operations:
                continue
            for actor in matrix.actors:
                if entry.expected[actor][operation] != "allowed":
                    yield entry, actor, operation


def blanket_statements(entry: Entry, actor: str, operation: str, world: ProbeWorld) -> list[Statement]:
    """Count person A's rows, run the WHERE-less statement as the actor (undone), and leave
    'untouched' or 'reached' in the outcome setting."""
    probe = blanket_probe(entry, operation, world)
    baseline = sql.SQL("select set_config({}, pg_temp.policy_count({})::text, true)").format(
        sql.Literal(_BASELINE_SETTING), sql.Literal(probe.check)
    )
    reach = sql.SQL(
        "select set_config({outcome}, case when coalesce(pg_temp.policy_reach({statement}, {check})::text, "
        "current_setting({baseline})) = current_setting({baseline}) then 'untouched' else 'reached' end, true)"
    ).format(
        outcome=sql.Literal(_OUTCOME_SETTING),
        statement=sql.Literal(probe.statement),
        check=sql.Literal(probe.check),
        baseline=sql.Literal(_BASELINE_SETTING),
    )
    return [baseline, *_become(actor, world), reach, _RESET]


Cell = tuple[str, str, str]  # (entry name, actor, operation)


@dataclass(frozen=True)
class Measurement:
    """What the database did: the outcome of every cell, and the WHERE-less statements that reached person A."""

    outcomes: Mapping[Cell, str]
    leaks: list[str]

    def mismatches(self, matrix: Matrix) -> list[str]:
        """Every cell whose measured outcome is not the matrix's, and every leak."""
        differ = [
            f"{entry.name}: {actor} {operation} is {self.outcomes.get((entry.name, actor, operation), 'not measured')},"
            f" the matrix says {entry.expected[actor][operation]}"
            for entry, actor, operation in matrix.cells()
            if self.outcomes.get((entry.name, actor, operation)) != entry.expected[actor][operation]
        ]
        return differ + self.leaks


def measure(conn: Connection, matrix: Matrix, world: ProbeWorld | None = None) -> Measurement:
    """Real attempts for every cell and every WHERE-less statement, in one transaction that is rolled back."""
    world = world or probe_world()
    outcomes = {}
    leaks = []
    with conn.transaction(force_rollback=True):
        _prepare(conn, world)
        for entry, actor, operation in matrix.cells():
            for step in cell_statements(entry, actor, operation, world):
                conn.execute(step)
            outcomes[(entry.name, actor, operation)] = _outcome(conn)
        for entry, actor, operation in blanket_cells(matrix):
            for step in blanket_statements(entry, actor, operation, world):
                conn.execute(step)
            if _outcome(conn) != "untouched":
                leaks.append(f"{entry.name}: {actor} reaches person A's rows with {operation} without WHERE")
    return Measurement(outcomes=outcomes, leaks=leaks)


# -----------------------------------------------------------------------------
# pgTAP and the report
# -----------------------------------------------------------------------------
def pgtap_file(matrix: Matrix, world: ProbeWorld | None = None) -> str:
    """Every cell as a pgTAP test, in the layout `supabase test db` runs."""
    world = world or probe_world()
    cells = list(matrix.cells())
    blanket = list(blanket_cells(matrix))
    lines = [
        "-- The access matrix (policies/access.toml) as pgTAP tests: one per cell.",
        "-- Generated by `glucokit policies pgtap`; do not edit. Run with pg_prove or `supabase test db`.",
        "begin;",
        "create extension if not exists pgtap with schema extensions;",
        "set local search_path = public, extensions;",
        f"select plan({len(cells) + len(blanket)});",
        "",
        _attempt_function().strip(),
        "",
        "-- The probe world (policies/world.sql) for persons A and B.",
        *(statement.as_string(None).strip() for statement in world_statements(world)),
    ]
    for entry, actor, operation in cells:
        if actor == matrix.actors[0] and operation == entry.operations[0]:
            lines += ["", f"-- {entry.kind} {entry.name}: {entry.owner_path}"]
        lines += [statement.as_string(None) + ";" for statement in cell_statements(entry, actor, operation, world)]
        expected = entry.expected[actor][operation]
        lines.append(
            sql.SQL("select is(current_setting({}), {}, {});")
            .format(
                sql.Literal(_OUTCOME_SETTING),
                sql.Literal(expected),
                sql.Literal(f"{entry.name}: {actor} {operation} is {expected}"),
            )
            .as_string(None)
        )
    lines += ["", "-- UPDATE and DELETE without WHERE, by every actor the matrix does not allow to."]
    for entry, actor, operation in blanket:
        lines += [statement.as_string(None) + ";" for statement in blanket_statements(entry, actor, operation, world)]
        lines.append(
            sql.SQL("select is(current_setting({}), 'untouched', {});")
            .format(
                sql.Literal(_OUTCOME_SETTING),
                sql.Literal(f"{entry.name}: {actor} {operation} without WHERE leaves person A's rows untouched"),
            )
            .as_string(None)
        )
    lines += ["", "select * from finish();", "rollback;", ""]
    return "\n".join(lines)


def report(matrix: Matrix, measurement: Measurement) -> str:
    """The matrix with the measured outcome of every cell, and the WHERE-less checks, as markdown."""
    leaks = measurement.leaks
    differing = len(measurement.mismatches(matrix)) - len(leaks)
    total = sum(1 for _ in matrix.cells())
    lines = [
        "# Access matrix: expected and measured",
        "",
        "Generated by `glucokit policies report` from `policies/access.toml`, measured by real attempts",
        "against a database migrated with `supabase db push` (in a transaction that is rolled back).",
        "Each cell is the outcome when the actor acts on a row of person A, owned by user A:",
        "**allowed** (the row is reached), **filtered** (zero rows, no error) or **refused** (SQLSTATE 42501).",
        "",
        f"{total} cells, {total - differing} as expected, {differing} not.",
        "",
        f"UPDATE and DELETE without WHERE, by each actor that may not update or delete person A's rows: "
        f"{sum(1 for _ in blanket_cells(matrix))} checked, {len(leaks)} reach person A's rows.",
        *(f"- {leak}" for leak in leaks),
    ]
    for entry in matrix.entries:
        title = f"`{entry.name}`" if entry.kind == "table" else f"{entry.kind} `{entry.name}`"
        lines += ["", f"## {title}", "", f"Owner path: `{entry.owner_path}`", ""]
        lines.append("| actor | " + " | ".join(entry.operations) + " |")
        lines.append("|---|" + "---|" * len(entry.operations))
        for actor in matrix.actors:
            cells = []
            for operation in entry.operations:
                expected = entry.expected[actor][operation]
                found = measurement.outcomes.get((entry.name, actor, operation), "not measured")
                cells.append(expected if found == expected else f"**{found}** (expected {expected})")
            lines.append(f"| {actor} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# -----------------------------------------------------------------------------
# Catalog guards
# -----------------------------------------------------------------------------
# Functions whose value is the same for every row: a policy must call them as
# (select f()) so that PostgreSQL evaluates them once per statement.
_PER_STATEMENT_CALL = re.compile(r"\b(auth\.(?:uid|jwt|role)|private\.[a-z_]+)\(\)")
_BUCKET = re.compile(r"bucket_id = '([^']+)'")


def exposed_schemas() -> list[str]:
    """The schemas the Data API exposes, from supabase/config.toml."""
    config = tomllib.loads((SUPABASE_DIR / "config.toml").read_text())
    return list(config["api"]["schemas"])


def guard(conn: Connection, matrix: Matrix) -> list[str]:
    """Everything in the catalog that has drifted from the matrix or from the kit's RLS rules."""
    schemas = exposed_schemas()
    params = {"schemas": schemas}
    problems: list[str] = []
    seen_tables = set()
    for name, secured, is_partition in conn.execute(query("guard_tables"), params):
        seen_tables.add(str(name))
        if not secured:
            problems.append(f"{name} has row-level security disabled")
        if not is_partition and name not in matrix.tables():
            problems.append(f"{name} has no entry in policies/access.toml")
    problems += _object_problems(conn, matrix, schemas, seen_tables)
    for (view,) in conn.execute(query("guard_definer_views"), params):
        problems.append(f"view {view} is not security_invoker")
    for row in conn.execute(query("guard_policies"), params):
        problems += _policy_problems(matrix, PolicyRow(*row))  # type: ignore[arg-type]
    for table, column in conn.execute(query("guard_unindexed_policy_columns"), params):
        problems.append(f"{table}.{column} is used by a policy but no index starts with it")
    for function, schema, settings in conn.execute(query("guard_security_definer"), {"schemas": [*schemas, "private"]}):
        if schema != "private":
            problems.append(f"security-definer function {function} is outside the private schema")
        if "search_path=" not in str(settings):
            problems.append(f"security-definer function {function} does not pin search_path")
    for target, privileges in conn.execute(query("guard_anon_grants"), {"schemas": [*schemas, "private"]}):
        problems.append(f"anon (or PUBLIC) holds {privileges} on {target}")
    return problems


def _object_problems(conn: Connection, matrix: Matrix, schemas: list[str], seen_tables: set[str]) -> list[str]:
    """Matrix tables that do not exist, tables open to anonymous users, and functions and views of the Data API
    that the matrix does not list (or lists but the API's roles cannot reach)."""
    params = {"schemas": schemas}
    problems: list[str] = []
    for name in sorted(matrix.tables() - seen_tables):
        exposed = name.partition(".")[0] in schemas
        row = None if exposed else conn.execute(query("guard_relation_exists"), {"name": name}).fetchone()
        if row is None or not row[0]:
            problems.append(f"{name} is in policies/access.toml but not in the database")
    for (table,) in conn.execute(query("guard_anonymous_fence"), params):
        problems.append(f"{table} has no restrictive policy that keeps anonymous users out (is_anonymous)")
    reachable = {(str(name), str(kind)) for name, kind in conn.execute(query("guard_routines"), params)}
    for kind in ("function", "view"):
        found = {name for name, found_kind in reachable if found_kind == kind}
        problems += [
            f"{kind} {name} is reachable through the Data API but has no entry in policies/access.toml"
            for name in sorted(found - matrix.names(kind))
        ]
        problems += [
            f"{kind} {name} is in policies/access.toml but the Data API's roles cannot reach it"
            for name in sorted(matrix.names(kind) - found)
        ]
    return problems


@dataclass(frozen=True)
class PolicyRow:
    """One row of pg_policies, as the guard_policies query returns it."""

    schema: str
    table: str
    policy: str
    permissive: bool
    roles: list[str]
    command: str
    qual: str | None
    check: str | None


def _policy_problems(matrix: Matrix, row: PolicyRow) -> list[str]:
    table, command, roles = f"{row.schema}.{row.table}", row.command, row.roles
    expressions = " ".join(e for e in (row.qual, row.check) if e)
    named = f'policy "{row.policy}" on {table}'
    if table == "storage.objects":
        bucket = _BUCKET.search(expressions)
        if bucket is None:
            return [f"{named} applies to every bucket"]
        entry = matrix.bucket(bucket.group(1))
        if entry is None:
            return []  # another application's bucket
    else:
        entry = next((e for e in matrix.entries if e.kind == "table" and e.name == table), None)
        if entry is None:
            return []  # reported as a table without an entry
    problems = [
        f"{named} calls {call.group(1)}() once per row: write (select {call.group(1)}())"
        for call in _PER_STATEMENT_CALL.finditer(expressions)
        if not expressions[: call.start()].rstrip("( ").upper().endswith("SELECT")
    ]
    if not row.permissive:
        return problems  # a restrictive policy only narrows what the permissive ones open
    operations = matrix.operations if command == "ALL" else (command.lower(),)
    for role in roles:
        actors = ROLE_ACTORS.get(role)
        if actors is None:
            problems.append(f"{named} is for role {role}, which the matrix does not grant anything")
        elif not any(entry.expected[a][o] == "allowed" for a in actors for o in operations):
            problems.append(f"{named} lets {role} {command.lower()}, which the matrix allows none of its actors")
    return problems
