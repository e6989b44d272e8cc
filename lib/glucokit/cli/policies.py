"""glucokit policies: measure the access matrix (policies/access.toml), report it and write it as pgTAP tests."""

from __future__ import annotations

import argparse
from typing import Any

from glucokit.cli.common import Exit, Parser
from glucokit.db import connection
from glucokit.tooling import database, policies


def _policies_check(args: argparse.Namespace) -> int:
    matrix = policies.load()
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        measurement = policies.measure(conn, matrix)
        problems = policies.guard(conn, matrix) + measurement.mismatches(matrix)
    for problem in problems:
        print(f"problem: {problem}")
    blanket = sum(1 for _ in policies.blanket_cells(matrix))
    print(
        f"{len(measurement.outcomes)} cells and {blanket} statements without WHERE measured; {len(problems)} problem(s)"
    )
    return Exit.FAILED if problems else Exit.OK


def _policies_report(args: argparse.Namespace) -> int:
    matrix = policies.load()
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        text = policies.report(matrix, policies.measure(conn, matrix))
    if args.write:
        policies.REPORT_FILE.write_text(text)
        print(f"wrote {policies.REPORT_FILE}")
    else:
        print(text, end="")
    return Exit.OK


def _policies_pgtap(args: argparse.Namespace) -> int:
    text = policies.pgtap_file(policies.load())
    path = policies.PGTAP_FILE
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is out of date: run `glucokit policies pgtap`")
            return Exit.FAILED
        print(f"{path} is up to date")
        return Exit.OK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return Exit.OK


def add_commands(commands: Any, common: Parser) -> None:
    """policies check, report and pgtap."""
    policies_parser = commands.add_parser("policies", help="the access matrix in policies/access.toml")
    policies_commands = policies_parser.add_subparsers(dest="policies_command", required=True, metavar="ACTION")
    check = policies_commands.add_parser(
        "check",
        help=f"measure every cell and run the catalog guards (exit {Exit.FAILED} on any problem)",
        parents=[common],
    )
    check.set_defaults(handler=_policies_check)
    report = policies_commands.add_parser(
        "report", help="the matrix with the measured outcome of every cell, as markdown", parents=[common]
    )
    report.add_argument("--write", action="store_true", help=f"write it to {policies.REPORT_FILE.name} in docs/")
    report.set_defaults(handler=_policies_report)
    pgtap_command = policies_commands.add_parser("pgtap", help="write the matrix as pgTAP tests for pg_prove")
    pgtap_command.add_argument("--check", action="store_true", help="only check that the file is up to date")
    pgtap_command.set_defaults(handler=_policies_pgtap)
