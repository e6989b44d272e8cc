"""glucokit experiments: create, start, stop, follow and decide A/B experiments over model families (as the
database owner)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from glucokit.cli.common import BadArgument, Exit, Parser
from glucokit.db import connection
from glucokit.db.sessions import Connection
from glucokit.forecast.pipeline import FAMILIES
from glucokit.modelops import experiments
from glucokit.tooling import database


def _variant_spec(text: str) -> experiments.Variant:
    """An experiment variant from NAME=FAMILY[,FAMILY...][:WEIGHT]."""
    name, equals, rest = text.partition("=")
    families, colon, weight = rest.partition(":")
    if not equals or not families or (colon and not weight.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FAMILY[,FAMILY...][:WEIGHT] (e.g. b=network,ridge:1)")
    try:
        return experiments.Variant(name, tuple(f.strip() for f in families.split(",")), int(weight) if colon else 1)
    except ValueError as bad:
        raise argparse.ArgumentTypeError(str(bad)) from None


def _experiments_create(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    try:
        rule = experiments.Rule(
            args.horizon, args.alpha, args.mixture_sd, args.min_points, args.min_persons, args.max_persons
        )
        with connection.connect(target.url) as conn:
            made = experiments.create(conn, args.key, args.description, args.variant, rule)
    except ValueError as bad:
        raise BadArgument(str(bad)) from None
    print(f"experiment {made.key} created (draft); start it with: glucokit experiments start {made.key}")
    return Exit.OK


def _experiments_transition(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        done = experiments.transition(conn, args.key, args.experiments_command)
    print(f"experiment {done.key} is {done.status}")
    return Exit.OK


def _print_experiment(conn: Connection, experiment: experiments.Experiment) -> None:
    rule = experiment.rule
    started = f", started {experiment.started_at:%Y-%m-%d %H:%M}" if experiment.started_at else ""
    print(f"{experiment.key}  {experiment.status}{started}  {experiment.description}")
    print(
        f"  rule: mixture SPRT on per-person MAE at {rule.horizon_minutes} min, alpha {rule.alpha}, "
        f"mixture sd {rule.mixture_sd} mg/dL, >= {rule.min_points_per_person} points per person, "
        f">= {rule.min_persons_per_variant} persons per variant"
        + (f", futility at {rule.max_persons_per_variant}" if rule.max_persons_per_variant else "")
    )
    counts = {row.variant: row for row in experiments.counts(conn, experiment)}
    analysis = experiments.analyse(conn, experiment)
    measured = {metrics.variant: metrics for metrics in analysis.metrics}
    for variant in experiment.variants:
        count, metrics = counts.get(variant.name), measured[variant.name]
        print(
            f"  {variant.name:<12} weight {variant.weight:<4} {','.join(variant.families):<24}"
            f" assigned {count.assigned if count else 0}, exposed {count.exposed if count else 0},"
            f" contaminated {count.contaminated if count else 0}; {metrics.persons} persons, {metrics.points} points:"
            f" MAE {metrics.mae:.2f}, RMSE {metrics.rmse:.2f} mg/dL, coverage {metrics.coverage:.1%}"
        )
    for person, why in analysis.excluded.items():
        print(f"  left out {person}: {why}")
    if analysis.verdict is not None:
        print(f"  rule: {analysis.verdict.decision}: {analysis.verdict.reason}")


def _experiments_status(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        found = [experiments.get(conn, args.key)] if args.key else experiments.all_experiments(conn)
        if args.json:
            print(json.dumps([experiments.analyse(conn, e).as_json() for e in found], indent=2))
        for experiment in found if not args.json else ():
            _print_experiment(conn, experiment)
    if not found:
        print("no experiments")
        return Exit.NOTHING
    return Exit.OK


def _experiments_decide(args: argparse.Namespace) -> int:
    target = database.target(args.database_url)
    with connection.connect(target.url) as conn:
        experiment = experiments.get(conn, args.key)
        analysis = experiments.analyse(conn, experiment)
        assert analysis.verdict is not None
        if analysis.verdict.decision == "continue":
            print(f"experiment {experiment.key}: continue: {analysis.verdict.reason}")
            return Exit.NOTHING
        experiments.record_decision(conn, experiment, analysis)
    print(f"experiment {experiment.key} decided: {analysis.verdict.decision}: {analysis.verdict.reason}")
    return Exit.OK


def add_commands(commands: Any, common: Parser) -> None:
    """create, start, stop, status and decide A/B experiments over model families (as the database owner)."""
    parser = commands.add_parser("experiments", help="A/B experiments over model families across persons")
    actions = parser.add_subparsers(dest="experiments_command", required=True, metavar="ACTION")
    keyed = Parser(add_help=False, parents=[common])
    keyed.add_argument("key", help="the experiment's key")
    create = actions.add_parser("create", help="define a draft experiment with two variants", parents=[keyed])
    create.add_argument("--description", required=True, help="what the experiment compares, and why")
    create.add_argument(
        "--variant", type=_variant_spec, action="append", required=True, metavar="NAME=FAMILY[,FAMILY][:WEIGHT]",
        help=f"a variant: its name, model families (of {', '.join(FAMILIES)}) and weight (default 1); twice",
    )  # fmt: skip
    defaults = experiments.Rule()
    for flag, kind, default, help_text in (
        ("--horizon", int, defaults.horizon_minutes, "forecast horizon compared, minutes"),
        ("--alpha", float, defaults.alpha, "type-I error rate of the decision rule"),
        ("--mixture-sd", float, defaults.mixture_sd, "mixture standard deviation of the MAE difference, mg/dL"),
        ("--min-points", int, defaults.min_points_per_person, "forecast points with an outcome a person needs"),
        ("--min-persons", int, defaults.min_persons_per_variant, "persons per variant before the rule may stop"),
        ("--max-persons", int, None, "persons per variant after which the rule stops for futility"),
    ):
        create.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default})")
    create.set_defaults(handler=_experiments_create)
    for action, help_text in (
        ("start", "start a draft experiment: persons are assigned at their next retrain"),
        ("stop", "stop a running experiment without a decision"),
    ):
        actions.add_parser(action, help=help_text, parents=[keyed]).set_defaults(handler=_experiments_transition)
    status = actions.add_parser(
        "status", help=f"variants, assignments, per-variant metrics and the rule's verdict (exit {Exit.NOTHING}: none)",
        parents=[common],
    )  # fmt: skip
    status.add_argument("key", nargs="?", help="one experiment (default: all)")
    status.add_argument("--json", action="store_true", help="the analyses as JSON")
    status.set_defaults(handler=_experiments_status)
    decide = actions.add_parser(
        "decide",
        help=f"apply the decision rule; record the decision when it stops (exit {Exit.NOTHING}: continue)",
        parents=[keyed],
    )
    decide.set_defaults(handler=_experiments_decide)
