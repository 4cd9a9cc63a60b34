"""The `braid` command line (also `python -m braid`).

    braid up CONFIG [--stats FILE] [-v]   run a portal in the foreground until SIGINT/SIGTERM
    braid check CONFIG                    validate a config and summarise it
    braid version                         print the version
    braid genkey | braid pubkey           X25519 keys as base64 text, like wg genkey/pubkey
    braid lab ...                         the emulated testbed (braid.lab.cli)

Exit codes: 0 success; 1 runtime failure (a driver cannot be set up, not root, ...);
2 bad usage or an invalid config. Errors are one line on stderr, never a traceback.
Imports are lazy so that quick commands start quickly.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def _fail(message: str, code: int = EXIT_FAILURE) -> int:
    sys.stderr.write(f"braid: {message}\n")
    return code


def _build_parser() -> _Parser:
    from braid import __version__

    parser = _Parser(
        prog="braid",
        description="braid: several Internet links joined into one virtual layer-3 link.",
    )
    parser.add_argument("--version", action="version", version=f"braid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    up = sub.add_parser("up", help="run a portal in the foreground until SIGINT/SIGTERM")
    up.add_argument("config", metavar="CONFIG", help="the portal's TOML config file")
    up.add_argument("--stats", metavar="FILE", help="write statistics as JSON to FILE every second")
    up.add_argument("-v", "--verbose", action="store_true", help="log debugging details")

    check = sub.add_parser("check", help="validate a config file and summarise it")
    check.add_argument("config", metavar="CONFIG", help="the portal's TOML config file")

    sub.add_parser("version", help="print the version")
    sub.add_parser("genkey", help="print a new private key (base64)")
    sub.add_parser("pubkey", help="read a private key on stdin, print its public key")
    sub.add_parser("lab", help="the emulated multi-link testbed (braid lab --help)", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]); returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "lab":
        return _lab(args_list[1:])
    parser = _build_parser()
    args = parser.parse_args(args_list)
    try:
        if args.command == "up":
            return _up(args.config, args.stats, verbose=args.verbose)
        if args.command == "check":
            return _check(args.config)
        if args.command == "version":
            return _version()
        if args.command == "genkey":
            return _genkey()
        if args.command == "pubkey":
            return _pubkey()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    parser.print_usage(sys.stderr)
    return EXIT_USAGE


def _version() -> int:
    from braid import __version__
    from braid.core.wire import VERSION

    print(f"braid {__version__} (wire protocol {VERSION})")
    return EXIT_OK


def _genkey() -> int:
    from braid.control.keytool import generate_private_key

    print(generate_private_key())
    return EXIT_OK


def _pubkey() -> int:
    from braid.control.keytool import public_key

    text = sys.stdin.read()
    try:
        print(public_key(text))
    except ValueError as exc:
        return _fail(
            f"pubkey: stdin is not a private key ({exc}); expected the base64 text"
            " 'braid genkey' prints"
        )
    return EXIT_OK


def _check(path: str) -> int:
    from braid.control.config import ConfigError, describe, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[green]ok[/green] {_escape(path)}: valid {config.role} portal config")
    for line in describe(config):
        console.print(f"  {_escape(line)}")
    return EXIT_OK


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class _LogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname.lower()}: {message}"
        text = f"braid: {message}"
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(*, verbose: bool = False) -> None:
    """Log to stderr as `braid: message` lines (INFO, or DEBUG when verbose)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    root = logging.getLogger("braid")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _up(path: str, stats: str | None, *, verbose: bool) -> int:
    from braid.control.config import ConfigError, load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    if stats is not None:
        from pathlib import Path

        folder = Path(stats).parent
        if not folder.is_dir():
            return _fail(
                f"--stats {stats}: directory {folder} does not exist; expected a file path"
                " in an existing directory",
                EXIT_USAGE,
            )
    setup_logging(verbose=verbose)
    from braid.control.up import up
    from braid.io.base import DriverError

    try:
        return up(config, stats_path=stats)
    except DriverError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if verbose:
            logging.getLogger("braid").debug("details", exc_info=exc)
        return _fail(f"unexpected error: {type(exc).__name__}: {exc}")


def _lab(argv: list[str]) -> int:
    try:
        from braid.lab.cli import main as lab_main
    except ImportError as exc:
        return _fail(f"lab: not available ({exc}); install braid with its lab package")
    try:
        return int(lab_main(argv) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
