"""glucokit privacy: a person's consent, audit log, export and erasure (as the owner), and the privacy job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from glucokit.cli.common import Exit, Parser, person_owner
from glucokit.db import connection
from glucokit.db.sessions import Connection
from glucokit.errors import GlucokitError
from glucokit.jobs import privacy_job
from glucokit.modelops import model_store
from glucokit.privacy import rights as privacy
from glucokit.privacy.consent import CONSENT_PURPOSES
from glucokit.settings import StoreSettings, load
from glucokit.tooling import database


def _privacy_owner(args: argparse.Namespace, conn: Connection) -> UUID:
    return person_owner(conn, args.person, args.user)


def _print_consents(person: UUID, records: list[privacy.Consent]) -> None:
    for record in records:
        state = (
            f"given {record.granted_at:%Y-%m-%d %H:%M}"
            if record.in_force
            else f"withdrawn {record.withdrawn_at:%Y-%m-%d %H:%M}"
            + (", models removed" if record.delete_models else "")
        )
        print(f"person {person}: {record.purpose:<15} {state}")


def _privacy_consent(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        user = _privacy_owner(args, conn)
        if args.grant:
            records = privacy.grant(conn, user, args.person, args.grant)
        elif args.withdraw:
            records = privacy.withdraw(conn, user, args.person, args.withdraw, delete_models=args.delete_models)
        else:
            records = privacy.consents(conn, user, args.person)
    if not records:
        print(f"person {args.person} has given no consent")
        return Exit.NOTHING
    _print_consents(args.person, records)
    return Exit.OK


def _privacy_audit(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        entries = privacy.audit_log(conn, _privacy_owner(args, conn), args.person, limit=args.limit)
    for entry in entries:
        print(
            f"{entry.occurred_at:%Y-%m-%d %H:%M:%S}  {entry.purpose:<15} {entry.worker} ({entry.application}):"
            f" {entry.reason}"
        )
    return Exit.OK if entries else Exit.NOTHING


def _privacy_export(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        user = _privacy_owner(args, conn)
        done = privacy.export_everything(
            conn, model_store.from_settings(load(StoreSettings)), user, args.person, args.out
        )
    rows = sum(done.tables.values())
    print(
        f"person {args.person}: {done.entries} FHIR entries in {args.out / 'bundle.json'};"
        f" {rows} rows of {len(done.tables)} tables and {done.models} model metadata files"
        f" in {args.out / 'records.json'}"
    )
    return Exit.OK


def _privacy_erase(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        user = _privacy_owner(args, conn)
        if not args.yes:
            raise GlucokitError(f"erasing person {args.person} removes everything about them for good: add --yes")
        privacy.delete_person(conn, user, args.person)
    print(f"person {args.person}: every row erased; their files go when the privacy job runs (glucokit privacy run)")
    return Exit.OK


def _privacy_run(args: argparse.Namespace) -> int:
    with connection.connect(database.target(args.database_url).url) as conn:
        done = privacy_job.run(conn, model_store.from_settings(load(StoreSettings)))
    for person, files in done.erased.items():
        print(f"{person}: erased ({len(files)} files)")
    for person, models in done.models_removed.items():
        print(f"{person}: {models} model versions removed")
    for person, failure in done.failed.items():
        print(f"{person}: failed: {failure}", file=sys.stderr)
    print(
        f"{len(done.erased)} erased, {len(done.models_removed)} model removals, {len(done.failed)} failed,"
        f" {done.stopped}"
    )
    return Exit.FAILED if done.failed else Exit.OK


def add_commands(commands: Any, common: Parser) -> None:
    """privacy consent, audit, export, erase (the owner) and run (the privacy job)."""
    parser = commands.add_parser("privacy", help="consent, audit log, export and erasure of a person (GDPR)")
    actions = parser.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    owner = Parser(add_help=False, parents=[common])
    owner.add_argument("--person", type=UUID, required=True, metavar="ID")
    owner.add_argument(
        "--user", type=UUID, metavar="ID", help="act as this signed-in user (default: the person's owner)"
    )
    purposes = [str(purpose) for purpose in CONSENT_PURPOSES]
    consent_command = actions.add_parser(
        "consent",
        help=f"show, give or withdraw the person's consent per purpose (exit {Exit.NOTHING}: none given)",
        parents=[owner],
    )
    change = consent_command.add_mutually_exclusive_group()
    change.add_argument("--grant", nargs="+", choices=purposes, metavar="PURPOSE", help=f"one of {', '.join(purposes)}")
    change.add_argument("--withdraw", nargs="+", choices=purposes, metavar="PURPOSE")
    consent_command.add_argument(
        "--delete-models", action="store_true", help="with --withdraw training: remove the person's models too"
    )
    consent_command.set_defaults(handler=_privacy_consent)
    audit = actions.add_parser(
        "audit",
        help=f"which worker touched the person when and why, newest first (exit {Exit.NOTHING}: nothing)",
        parents=[owner],
    )
    audit.add_argument("--limit", type=int, default=100, metavar="N")
    audit.set_defaults(handler=_privacy_audit)
    export_everything = actions.add_parser(
        "export",
        help="everything about the person: a FHIR bundle and every record with model metadata",
        parents=[owner],
    )
    export_everything.add_argument("--out", type=Path, required=True, metavar="DIR")
    export_everything.set_defaults(handler=_privacy_export)
    erase = actions.add_parser(
        "erase", help="erase the person: every row now, their files with the privacy job", parents=[owner]
    )
    erase.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    erase.set_defaults(handler=_privacy_erase)
    actions.add_parser(
        "run", help="the privacy job: remove erased persons' files and withdrawn models (as a worker)", parents=[common]
    ).set_defaults(handler=_privacy_run)
