"""Every `glucokit` command answers bad input with one line on stderr and a documented exit status.

The commands are found by walking the parser `glucokit.cli.main` builds, so a new command is covered without
touching this file; each runs in-process with the values it requires made up from its parser.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from glucokit.cli import data as data_commands
from glucokit.cli import db as db_commands
from glucokit.cli import experiments as experiment_commands
from glucokit.cli import main as cli
from glucokit.cli import summary as summary_commands
from glucokit.cli.common import EXIT_MEANINGS, Exit
from glucokit.db.sessions import Connection
from glucokit.errors import DatabaseUnreachable
from glucokit.project import PROJECT_DIR
from owners import Owner

Command = tuple[str, ...]

# Commands that take no database URL: they touch neither the database nor a person, so they have no unknown
# person, malformed id or database that is down to answer.
OFFLINE: dict[Command, str] = {
    ("policies", "pgtap"): "writes the pgTAP file from policies/access.toml",
    ("simulate",): "simulates patients with simglucose and writes bundles",
    ("evaluate",): "trains on bundle files",
}

# Commands that answer without connecting, and so give another status than UNREACHABLE when the database is down.
NEVER_CONNECT: dict[Command, Exit] = {
    ("db", "url"): Exit.OK,  # prints the URL it was given
    ("db", "start"): Exit.FAILED,  # glucokit starts and stops only its embedded database, never a URL's
    ("db", "stop"): Exit.FAILED,
    ("db", "reset"): Exit.FAILED,  # refuses another server without --yes
}


def _leaves(parser: argparse.ArgumentParser, words: Command = ()) -> Iterator[tuple[Command, argparse.ArgumentParser]]:
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subcommands:
        yield words, parser
    for action in subcommands:
        for name, subparser in action.choices.items():
            yield from _leaves(subparser, (*words, name))


COMMANDS = dict(_leaves(cli.build_parser()))


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((action for action in parser._actions if flag in action.option_strings), None)


def _arguments(parser: argparse.ArgumentParser, tmp_path: Path, person: str, *, every_id: bool = False) -> list[str]:
    """A plausible value for every argument the command requires (and with ``every_id``, for every id it takes);
    ``person`` stands for every id."""
    input_file = tmp_path / "input.json"
    input_file.write_text("{}")
    plausible: dict[object, str] = {
        None: "walk",  # text
        UUID: person,
        Path: str(tmp_path / "out"),
        data_commands._input_file: str(input_file),
        int: "1",
        float: "1",
        date.fromisoformat: "2026-11-20",
        experiment_commands._variant_spec: "a=ridge",
        summary_commands._moment: "2026-11-20T00:00:00Z",
    }
    chosen = [
        next(
            (action for action in group._group_actions if "--person" in action.option_strings), group._group_actions[0]
        )
        for group in parser._mutually_exclusive_groups
        if group.required
    ]
    wanted = [
        action
        for action in parser._actions
        if action.required or action in chosen or (every_id and action.type is UUID)
    ]
    values: list[str] = []
    for action in wanted:
        if action.nargs == 0:  # a flag
            values.append(action.option_strings[0])
            continue
        assert action.type in plausible or action.choices, f"make up a value of {action.type} for {action.dest}"
        value = plausible[action.type] if action.type in plausible else str(next(iter(action.choices or ())))
        values += [*action.option_strings[:1], value]
    return values


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The exit status and the one line on stderr of ``glucokit argv``."""
    code = cli.main(argv)
    output = capsys.readouterr()
    assert "Traceback" not in output.out + output.err, argv
    assert code in EXIT_MEANINGS, (argv, code)
    if code == Exit.OK:
        return code, output.err
    assert output.err.count("\n") == 1, (argv, output.err)
    assert output.err.endswith("\n"), (argv, output.err)
    assert re.match(r"glucokit( [a-z]+)*: error: \S", output.err), (argv, output.err)
    return code, output.err


def test_every_command_takes_a_database_url_or_says_why_not() -> None:
    offline = {words for words, parser in COMMANDS.items() if _option(parser, "--database-url") is None}
    assert offline == set(OFFLINE)


@pytest.mark.parametrize("words", sorted(set(COMMANDS) - set(OFFLINE)), ids=" ".join)
def test_a_database_that_is_down(words: Command, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # No server listens in this socket directory: the connection fails at once.
    down = ["--database-url", f"postgresql://postgres@localhost/postgres?host={tmp_path}&connect_timeout=1"]
    argv = [*words, *_arguments(COMMANDS[words], tmp_path, str(uuid4())), *down]
    code, err = _run(argv, capsys)
    assert code == NEVER_CONNECT.get(words, Exit.UNREACHABLE), (argv, err)
    if code == Exit.UNREACHABLE:
        assert "cannot connect to postgresql://postgres@localhost/postgres" in err


TAKES_A_PERSON = sorted(words for words, parser in COMMANDS.items() if _option(parser, "--person"))


@pytest.mark.parametrize("words", TAKES_A_PERSON, ids=" ".join)
def test_an_unknown_person(
    words: Command, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    person = str(uuid4())
    argv = [*words, *_arguments(COMMANDS[words], tmp_path, person), "--database-url", database_url]
    code, err = _run(argv, capsys)
    assert code == Exit.NOT_FOUND, (argv, err)
    assert f"person {person} does not exist" in err


TAKES_AN_ID = sorted(
    words for words, parser in COMMANDS.items() if any(action.type is UUID for action in parser._actions)
)


@pytest.mark.parametrize("words", TAKES_AN_ID, ids=" ".join)
def test_a_malformed_id(words: Command, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*words, *_arguments(COMMANDS[words], tmp_path, "not-a-uuid", every_id=True)]
    code, err = _run(argv, capsys)
    assert code == Exit.USAGE, (argv, err)
    assert "invalid UUID value: 'not-a-uuid'" in err


def test_the_walk_reaches_every_command_it_names() -> None:
    assert {("models", "list"), ("models", "rollback")} <= set(TAKES_A_PERSON)
    assert set(OFFLINE) | set(NEVER_CONNECT) <= set(COMMANDS)


def test_a_person_without_consent_is_refused_in_one_line(
    conn: Connection, database_url: str, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    conn.execute("delete from public.consent where person_id = %s and purpose = 'training'", (owner.person,))
    conn.commit()
    code, err = _run(["models", "list", "--person", str(owner.person), "--database-url", database_url], capsys)
    assert (code, err) == (
        Exit.NOT_FOUND,
        f"glucokit: error: person {owner.person} has not consented to training\n",
    )


def test_a_value_the_database_cannot_store_is_bad_input(
    database_url: str, owner: Owner, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["models", "rollback", "--person", str(owner.person), "--reason", "nul\x00", "--database-url", database_url]
    assert _run(argv, capsys) == (
        Exit.USAGE,
        "glucokit: error: PostgreSQL text fields cannot contain NUL (0x00) bytes\n",
    )


def test_a_file_that_cannot_be_written_is_bad_input(
    database_url: str, owner: Owner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "no such directory" / "export.json"
    argv = ["export", "--person", str(owner.person), "--out", str(out), "--database-url", database_url]
    assert _run(argv, capsys) == (Exit.USAGE, f"glucokit: error: {out}: No such file or directory\n")


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["models", "list", "--person", str(uuid4()), "--database-url", f"postgresql://postgres@/x?host={tmp_path}"]
    with pytest.raises(DatabaseUnreachable):
        cli.main(["--debug", *argv])
    monkeypatch.setenv("GLUCOKIT_DEBUG", "1")
    with pytest.raises(DatabaseUnreachable):
        cli.main(argv)


def test_an_unexpected_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise KeyError("model")

    monkeypatch.setattr(db_commands, "_db_url", broken)
    assert _run(["db", "url"], capsys) == (
        Exit.FAILED,
        "glucokit: error: unexpected KeyError: 'model' (--debug shows the traceback)\n",
    )


def test_the_exit_statuses_are_documented_once() -> None:
    """`glucokit --help` and the README list the same table, generated from and checked against `Exit`."""
    epilog = cli.build_parser().epilog or ""
    listed = re.findall(r"^  (\d)  (.+)$", epilog, flags=re.MULTILINE)
    assert [(int(code), meaning) for code, meaning in listed] == [(int(k), v) for k, v in EXIT_MEANINGS.items()]
    readme = (PROJECT_DIR / "README.md").read_text().split("\n## The command line\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d) \| (.+) \|$", readme, flags=re.MULTILINE)
    assert [(int(code), meaning) for code, meaning in rows] == [(int(k), v) for k, v in EXIT_MEANINGS.items()]
