"""The `syncd` command's contract: one line per failure, exit 2 for usage or config, 1 for a failed
command, and never a bare traceback or a secret on the terminal."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.cli import main
from syncd.commands import running
from syncd.config import Settings
from syncd.errors import SourceError
from syncd.redaction import fingerprint

SECRET = "hunter2-very-secret"


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `syncd argv...`, expect exit 2, and return its one line of stderr."""
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    out, err = capsys.readouterr()
    assert out == ""
    assert caught.value.code == 2 and out == ""
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ("demo", "--products", "-1"),
            "syncd demo: error: argument --products: '-1' is invalid: expected a whole number, "
            "0 or more (see 'syncd demo --help')",
        ),
        (
            ("emulator", "--products", "-5"),
            "syncd emulator: error: argument --products: '-5' is invalid: expected a whole "
            "number, 0 or more (see 'syncd emulator --help')",
        ),
        (
            ("emulator", "--port", "99999"),
            "syncd emulator: error: argument --port: '99999' is invalid: expected a TCP port, "
            "0-65535 (see 'syncd emulator --help')",
        ),
        (
            ("emulator", "--rate-limit", "-1"),
            "syncd emulator: error: argument --rate-limit: '-1' is invalid: expected a positive "
            "number of requests per second (see 'syncd emulator --help')",
        ),
        (
            ("emulator", "--rate-limit", "nan"),
            "syncd emulator: error: argument --rate-limit: 'nan' is invalid: expected a positive "
            "number of requests per second (see 'syncd emulator --help')",
        ),
        (
            ("healthcheck", "--timeout", "0"),
            "syncd healthcheck: error: argument --timeout: '0' is not a positive number of seconds "
            "(see 'syncd healthcheck --help')",
        ),
        (
            ("--config", "", "status"),
            "syncd: error: argument --config: '' is invalid: expected a file path "
            "(see 'syncd --help')",
        ),
        (
            ("runs", "--status", "done"),
            "syncd runs: error: argument --status: invalid choice: 'done' (choose from "
            "'running', 'succeeded', 'failed', 'cancelled') (see 'syncd runs --help')",
        ),
        (
            (),
            "syncd: error: the following arguments are required: COMMAND (see 'syncd --help')",
        ),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], expected: str
) -> None:
    """argparse's errors name the option, the value and what was expected, without the usage dump."""
    assert usage_error(capsys, *argv) == expected


def test_a_directory_as_demo_database_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--db naming a directory is refused before the emulator starts."""
    line = usage_error(capsys, "demo", "--db", str(tmp_path))
    assert line.endswith(f"argument --db: '{tmp_path}' is a directory: expected a file path "
                         "(see 'syncd demo --help')")  # fmt: skip


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_emulator_port_is_one_line_naming_the_address(
    busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The port taken by another process: exit 1, the address and a way out, no OSError trace."""
    assert main(["emulator", "--port", str(busy_port), "--products", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"syncd: error: cannot listen on 127.0.0.1:{busy_port}: Address already in use; "
        "pick another --port (0 picks a free one)\n"
    )


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A valid config file whose only secret comes from the environment."""
    monkeypatch.setenv("SYNCD_SECRET_SHOP_CLIENT_SECRET", SECRET)
    path = tmp_path / "syncd.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path}/s.db"\n[[sources]]\nname = "shop"\nkind = "adobe_commerce"\n'
        'base_url = "https://shop.example.com"\n[sources.auth]\nclient_id = "c"\norg_id = "o"\n'
    )
    return str(path)


def fail_with(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make `syncd check-config` raise `error` from inside the command."""

    async def broken(args: argparse.Namespace, settings: Settings) -> int:
        raise error

    monkeypatch.setattr(running, "check_config", broken)


def test_an_unexpected_exception_is_one_line_without_the_secret(
    config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last-resort handler: exit 1, one line that asks for a report and shows the secret's
    fingerprint instead of the secret."""
    fail_with(monkeypatch, RuntimeError(f"cannot use {SECRET}\nwhile doing things"))
    assert main(["--config", config, "check-config"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"syncd: internal error: RuntimeError: cannot use {fingerprint(SECRET)} while doing "
        "things; please report it (run with --log-level debug for the traceback)\n"
    )
    assert "Traceback" not in err


def test_the_traceback_is_logged_only_at_debug_and_scrubbed(
    config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--log-level debug adds the traceback as a log record, in the log format, secret redacted."""
    fail_with(monkeypatch, KeyError(SECRET))
    argv = ["--log-level", "debug", "--log-format", "json", "--config", config, "check-config"]
    assert main(argv) == 1
    *logs, last = capsys.readouterr().err.splitlines()
    assert last.startswith(f"syncd: internal error: KeyError: '{fingerprint(SECRET)}'; please")
    (record,) = [json.loads(line) for line in logs if "traceback" in line]
    assert record["level"] == "debug" and record["event"] == "traceback of the internal error"
    assert "Traceback (most recent call last)" in record["traceback"]
    assert "in broken" in record["traceback"] and SECRET not in record["traceback"]


@pytest.mark.parametrize(
    ("error", "code", "expected"),
    [
        (ExceptionGroup("run", [SourceError("page size capped at 300")]), 1,
         "syncd: error: page size capped at 300\n"),
        (PermissionError(13, "Permission denied", "/var/lib/syncd/syncd.db"), 1,
         "syncd: error: Permission denied: /var/lib/syncd/syncd.db\n"),
        (KeyboardInterrupt(), 130, "syncd: interrupted\n"),
    ],
)  # fmt: skip
def test_known_failures_from_inside_a_command_are_one_line(
    config: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    code: int,
    expected: str,
) -> None:
    """A TaskGroup's single error is unwrapped; the OS refusing is not an internal error."""
    fail_with(monkeypatch, error)
    assert main(["--config", config, "check-config"]) == code
    assert capsys.readouterr().err == expected
