"""glucokit models: a person's registered model versions, listed and rolled back (as a worker in the person's
scope)."""

from __future__ import annotations

import argparse
from typing import Any
from uuid import UUID

from glucokit.cli.common import Exit, Parser
from glucokit.db import connection
from glucokit.db.sessions import Purpose, as_worker
from glucokit.modelops import registry
from glucokit.tooling import database


def _models_list(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with (
        connection.connect(target.url) as conn,
        as_worker(conn, args.person, Purpose.TRAINING, "operator: list model versions"),
    ):
        found = registry.versions(conn, args.person)
    if not found:
        print(f"person {args.person} has no model versions")
        return Exit.NOTHING
    for model in found:
        fallback = ", fallback" if model.is_fallback else ""
        rmse = " ".join(
            f"RMSE{minutes} {model.metrics[key]:.2f}"
            for minutes in (30, 60)
            if isinstance(model.metrics.get(key := f"rmse_{minutes}"), float)
        )
        trained = f"trained {model.trained_at:%Y-%m-%d %H:%M}"
        print(f"{model.version:>8}  {model.stage:<8}  {model.algorithm}{fallback}  {trained}  {rmse}".rstrip())
        if model.stage_reason:
            print(f"{'':>8}  {model.stage_reason}")
    return Exit.OK


def _models_rollback(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with (
        connection.connect(target.url) as conn,
        as_worker(conn, args.person, Purpose.TRAINING, f"operator: roll back ({args.reason})"),
    ):
        restored = registry.rollback(conn, args.person, reason=args.reason)
    print(f"person {args.person}: version {restored.version} ({restored.algorithm}) is active again")
    return Exit.OK


def add_commands(commands: Any, common: Parser) -> None:
    """models list and models rollback."""

    models = commands.add_parser("models", help="a person's registered forecasting models (as a worker in scope)")
    models_commands = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    person = Parser(add_help=False, parents=[common])
    person.add_argument("--person", type=UUID, required=True, metavar="ID")
    list_command = models_commands.add_parser(
        "list", help=f"every version with its stage and test RMSE (exit {Exit.NOTHING}: none)", parents=[person]
    )
    list_command.set_defaults(handler=_models_list)
    rollback_command = models_commands.add_parser(
        "rollback",
        help="archive the active version and reactivate the newest earlier archived one",
        parents=[person],
    )
    rollback_command.add_argument("--reason", required=True, help="kept with both versions' stage")
    rollback_command.set_defaults(handler=_models_rollback)
