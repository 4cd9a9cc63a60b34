"""The `braid` CLI as a real subprocess: version, keys, usage errors, lab dispatch."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from braid import __version__
from braid.control.keytool import clamp, decode_key, generate_private_key, public_key
from braid.core.secure import VERSION

ROOT = Path(__file__).resolve().parents[2]

# RFC 7748 section 6.1: Alice's private key and public key.
RFC7748_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC7748_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


def braid(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "braid", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        cwd=ROOT,
    )


def test_version() -> None:
    result = braid("version")
    assert result.returncode == 0
    assert result.stdout == f"braid {__version__} (wire protocol {VERSION})\n"
    flag = braid("--version")
    assert flag.returncode == 0
    assert flag.stdout.strip() == f"braid {__version__}"


def test_genkey_pubkey_round_trip() -> None:
    private = braid("genkey")
    assert private.returncode == 0
    text = private.stdout.strip()
    raw = base64.b64decode(text, validate=True)
    assert len(raw) == 32 and len(text) == 44
    assert raw == clamp(raw)  # clamped like `wg genkey`
    public = braid("pubkey", stdin=private.stdout)
    assert public.returncode == 0, public.stderr
    assert public.stdout.strip() == public_key(text)
    assert len(base64.b64decode(public.stdout.strip(), validate=True)) == 32
    again = braid("genkey")
    assert again.stdout != private.stdout


def test_pubkey_matches_rfc7748() -> None:
    text = base64.b64encode(RFC7748_PRIVATE).decode()
    result = braid("pubkey", stdin=text + "\n")
    assert result.returncode == 0
    assert base64.b64decode(result.stdout.strip()) == RFC7748_PUBLIC


@pytest.mark.parametrize("stdin", ["", "not base64!\n", base64.b64encode(b"short").decode()])
def test_pubkey_rejects_garbage(stdin: str) -> None:
    result = braid("pubkey", stdin=stdin)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("braid: pubkey: stdin is not a private key")
    assert result.stdout == ""


def test_keytool_library() -> None:
    counter = iter(range(1000))
    text = generate_private_key(lambda n: bytes(next(counter) for _ in range(n)))
    assert decode_key(text) == clamp(bytes(range(32)))
    with pytest.raises(ValueError):
        decode_key("AAAA")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("bogus",), "invalid choice: 'bogus'"),
        (("up",), "the following arguments are required: CONFIG"),
        (("check", "a.toml", "b.toml"), "unrecognized arguments: b.toml"),
        (("up", "a.toml", "--colour"), "unrecognized arguments: --colour"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: tuple[str, ...], fragment: str) -> None:
    result = braid(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_no_command_prints_usage() -> None:
    result = braid()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: braid")


def test_help_lists_the_commands() -> None:
    result = braid("--help")
    assert result.returncode == 0
    for command in ("up", "check", "version", "genkey", "pubkey", "lab"):
        assert command in result.stdout


def test_lab_is_dispatched_to_the_lab_cli() -> None:
    result = braid("lab", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: braid lab")


def test_up_rejects_a_stats_path_in_a_missing_directory() -> None:
    result = braid("up", "examples/remote.toml", "--stats", "/nonexistent/dir/stats.json")
    assert result.returncode == 2
    assert result.stderr == (
        "braid: --stats /nonexistent/dir/stats.json: directory /nonexistent/dir does not exist;"
        " expected a file path in an existing directory\n"
    )


def test_up_rejects_a_bad_stats_interval_in_one_line() -> None:
    result = braid("up", "examples/remote.toml", "--stats-interval", "0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--stats-interval" in result.stderr and "0.05 to 3600" in result.stderr
