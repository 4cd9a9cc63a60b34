"""The `braid` command line (also `python -m braid`).

    braid up CONFIG [--stats FILE] [--stats-interval S] [-v]
                                          run a portal in the foreground until SIGINT/SIGTERM
                                          (FILE.jsonl: a time series of statistics)
    braid check CONFIG                    validate a config and summarise it
    braid version                         print the version
    braid genkey | braid pubkey           X25519 keys as base64 text, like wg genkey/pubkey
    braid status [CONFIG]                 a running portal's sessions, one line each (via its API)
    braid show [CONFIG] [--json]          sessions and paths in detail, like `wg show`
    braid set [CONFIG] WHAT ...           run-time changes: scheduler, link, path, session
    braid train TRACE ... --out MODEL     fit the loss predictor on gap traces (issue 7)
    braid lab ...                         the emulated testbed (braid.lab.cli)

status/show/set talk to the portal's REST API: its address and token come from the
config's [api] table, or from `--api URL --token TOKEN` (or `--token-file FILE`).

Exit codes: 0 success; 1 runtime failure (a driver cannot be set up, not root, the API
is unreachable or refuses a change, ...); 2 bad usage or an invalid config. Errors are one line on stderr, never a traceback.
Imports are lazy so that quick commands start quickly.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

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
    up.add_argument(
        "--stats",
        metavar="FILE",
        help="write statistics as JSON to FILE every second (FILE.jsonl: append a line each time)",
    )
    up.add_argument(
        "--stats-interval",
        metavar="SECONDS",
        type=_stats_interval,
        default=1.0,
        help="seconds between statistics snapshots (default 1; 0.05 to 3600)",
    )
    up.add_argument("-v", "--verbose", action="store_true", help="log debugging details")

    check = sub.add_parser("check", help="validate a config file and summarise it")
    check.add_argument("config", metavar="CONFIG", help="the portal's TOML config file")

    sub.add_parser("version", help="print the version")
    sub.add_parser("genkey", help="print a new private key (base64)")
    sub.add_parser("pubkey", help="read a private key on stdin, print its public key")
    sub.add_parser("lab", help="the emulated multi-link testbed (braid lab --help)", add_help=False)

    train = sub.add_parser(
        "train",
        help="fit the loss predictor on gap traces (session gap_trace, braid lab record)",
    )
    train.add_argument("traces", nargs="+", metavar="TRACE", help="JSONL gap trace files")
    train.add_argument(
        "--out", required=True, metavar="MODEL", help="the model file to write (JSON)"
    )
    train.add_argument(
        "--holdout",
        type=_fraction(0.0, 0.9, "a fraction of the files, 0..0.9"),
        default=0.25,
        metavar="F",
        help="fraction of the files held out for testing, by file (default 0.25)",
    )
    train.add_argument(
        "--threshold",
        type=_fraction(0.0, 1.0, "a probability, above 0 and below 1", open_range=True),
        metavar="T",
        help="decision threshold (default: the highest training precision with recall >= 0.5)",
    )

    for name, text in (
        ("status", "a running portal's sessions, one line each"),
        ("show", "a running portal's sessions and paths in detail (like wg show)"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("config", metavar="CONFIG", nargs="?", help="the portal's TOML config")
        _api_options(cmd)
        cmd.add_argument("--json", action="store_true", help="print the API's JSON instead")
    setter = sub.add_parser(
        "set",
        help="change a running portal: scheduler, link, path, session",
        description=SET_USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _api_options(setter)
    setter.add_argument("words", nargs=argparse.REMAINDER, metavar="[CONFIG] WHAT ...")
    return parser


SET_USAGE = """\
braid set [CONFIG] scheduler NAME [session SESSION_ID]
braid set [CONFIG] class CLASS scheduler NAME|default [session SESSION_ID]
braid set [CONFIG] param NAME VALUE [NAME VALUE ...] [session SESSION_ID]
braid set [CONFIG] link NAME [metric N] [rate RATE|none] [download RATE|none] [enable|disable]
braid set [CONFIG] link add NAME remote HOST:PORT [interface IF] [source ADDR] [rate RATE] [download RATE] [metric N]
braid set [CONFIG] link remove NAME
braid set [CONFIG] path SESSION_ID PATH_ID [metric N] [rate RATE|none] [enable|disable|remove]
braid set [CONFIG] session SESSION_ID close

RATE is like the config's: "20mbit", "500kbit". Changes apply at once, without restart.
param NAMEs (run-time thresholds): keepalive_interval, dead_interval, delay_cutoff,
bod_upper, bod_lower, redundant_copies."""


def _fraction(low: float, high: float, expected: str, *, open_range: bool = False) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        inside = low < value < high if open_range else low <= value <= high
        if not inside:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
        return value

    return parse


def _api_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--api", metavar="URL", help="the API's base URL, e.g. http://127.0.0.1:7180")
    cmd.add_argument("--token", metavar="TOKEN", help="the API's bearer token")
    cmd.add_argument("--token-file", metavar="FILE", help="read the bearer token from FILE")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]); returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "lab":
        return _lab(args_list[1:])
    parser = _build_parser()
    args = parser.parse_args(args_list)
    try:
        if args.command == "up":
            return _up(args.config, args.stats, args.stats_interval, verbose=args.verbose)
        if args.command == "check":
            return _check(args.config)
        if args.command == "version":
            return _version()
        if args.command == "genkey":
            return _genkey()
        if args.command == "pubkey":
            return _pubkey()
        if args.command in ("status", "show", "set"):
            return _remote_command(args)
        if args.command == "train":
            return _train(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    parser.print_usage(sys.stderr)
    return EXIT_USAGE


def _version() -> int:
    from braid import __version__
    from braid.core.secure import VERSION

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


def _stats_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds from 0.05 to 3600, e.g. 0.25")
    return value


def _up(path: str, stats: str | None, stats_interval: float = 1.0, *, verbose: bool) -> int:
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
        return up(config, stats_path=stats, stats_interval=stats_interval)
    except DriverError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if verbose:
            logging.getLogger("braid").debug("details", exc_info=exc)
        return _fail(f"unexpected error: {type(exc).__name__}: {exc}")


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from braid.control.train import TraceError, train

    out = Path(args.out)
    if out.is_dir():
        return _fail(f"train: --out {out} is a directory; expected a file path", EXIT_USAGE)
    if not out.parent.is_dir():
        return _fail(
            f"train: --out {out}: directory {out.parent} does not exist; expected a file path"
            " in an existing directory",
            EXIT_USAGE,
        )
    try:
        train(
            [Path(t) for t in args.traces],
            out,
            holdout=args.holdout,
            threshold=args.threshold,
            say=lambda line: print(line, flush=True),
        )
    except TraceError as exc:
        return _fail(f"train: {exc}", EXIT_USAGE)
    except BrokenPipeError:
        raise
    except OSError as exc:
        return _fail(f"train: cannot write {out} ({exc.strerror})")
    return EXIT_OK


def _lab(argv: list[str]) -> int:
    try:
        from braid.lab.cli import main as lab_main
    except ImportError as exc:
        return _fail(f"lab: not available ({exc}); install braid with its lab package")
    try:
        return int(lab_main(argv) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


# -- status / show / set: the API client ------------------------------------------------------


class _ApiFailure(Exception):
    """A one-line error talking to the API (exit code attached)."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class _Client:
    """A tiny JSON client of the portal's REST API (stdlib urllib)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: object = None) -> object:
        import json
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = f"{exc.code} {exc.reason}"
            raise _ApiFailure(f"api: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _ApiFailure(
                f"cannot reach the API at {self.base} ({reason}); is the portal up"
                " (braid up CONFIG) with an [api] table?"
            ) from None
        return json.loads(text) if text else None


def _client(args: argparse.Namespace, config_path: str | None) -> _Client:
    from pathlib import Path

    token = args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise _ApiFailure(
                f"--token-file {args.token_file}: cannot read ({exc.strerror})", EXIT_USAGE
            ) from None
    if args.api:
        if not token:
            raise _ApiFailure("--api needs --token TOKEN or --token-file FILE", EXIT_USAGE)
        return _Client(args.api, token)
    if config_path is None:
        raise _ApiFailure(
            "which portal? give its CONFIG (with an [api] table) or --api URL --token TOKEN",
            EXIT_USAGE,
        )
    from braid.control.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise _ApiFailure(str(exc), EXIT_USAGE) from None
    if config.api is None:
        raise _ApiFailure(
            f"{config_path}: no [api] table; add [api] with token_file = PATH (then restart"
            " the portal), or pass --api URL --token TOKEN",
            EXIT_USAGE,
        )
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.api.address, config.api.address)
    host = f"[{host}]" if ":" in host else host
    return _Client(f"http://{host}:{config.api.port}", token or config.api.token)


def _remote_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "set":
            words = list(args.words)
            config_path = None
            if not args.api:
                if not words:
                    raise _ApiFailure("set: missing CONFIG; see 'braid set --help'", EXIT_USAGE)
                config_path = words.pop(0)
            return _set(_client(args, config_path), words)
        client = _client(args, args.config)
        portal = client.call("GET", "/api/v1/portal")
        sessions = client.call("GET", "/api/v1/sessions")
        assert isinstance(portal, dict) and isinstance(sessions, dict)
        if args.json:
            import json

            print(json.dumps({"portal": portal, **sessions}, indent=1))
            return EXIT_OK
        _render(portal, sessions["sessions"], detail=args.command == "show")
        return EXIT_OK
    except _ApiFailure as exc:
        return _fail(str(exc), exc.code)


def _take(words: list[str], what: str) -> str:
    if not words:
        raise _ApiFailure(f"set: {what} missing; see 'braid set --help'", EXIT_USAGE)
    return words.pop(0)


def _int_word(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _ApiFailure(f"set: {what} {text!r} is not an integer", EXIT_USAGE) from None


def _rate_word(text: str) -> int | None:
    if text == "none":
        return None
    from braid.control.config import parse_rate

    rate = parse_rate(text)
    if rate is None:
        raise _ApiFailure(
            f"set: rate {text!r} is not a rate; expected e.g. 20mbit, 500kbit or none", EXIT_USAGE
        )
    return rate


def _rates(path: dict[str, Any]) -> str:
    """A path's rate hints for `braid show`: "20mbit", up/down "20mbit/50mbit", "-"."""
    from braid.control.config import format_rate

    up = format_rate(path["rate_bps"]) if path["rate_bps"] else "-"
    down = path.get("download_bps")
    return f"{up}/{format_rate(down)}" if down else up


def _changes(words: list[str], *, allow_remove: bool) -> tuple[dict[str, object], bool]:
    """metric N / rate R / download R / enable / disable [/ remove] words as a PATCH body."""
    body: dict[str, object] = {}
    remove = False
    while words:
        word = words.pop(0)
        if word == "metric":
            body["metric"] = _int_word(_take(words, "metric value"), "metric")
        elif word == "rate":
            body["rate_bps"] = _rate_word(_take(words, "rate value"))
        elif word == "download":
            body["download_bps"] = _rate_word(_take(words, "download value"))
        elif word in ("enable", "disable"):
            body["enabled"] = word == "enable"
        elif word == "remove" and allow_remove:
            remove = True
        else:
            choices = "metric, rate, download, enable, disable" + (
                ", remove" if allow_remove else ""
            )
            raise _ApiFailure(f"set: unknown word {word!r}; expected {choices}", EXIT_USAGE)
    if not body and not remove:
        raise _ApiFailure("set: nothing to change; see 'braid set --help'", EXIT_USAGE)
    return body, remove


def _set(client: _Client, words: list[str]) -> int:
    what = _take(words, "what to set (scheduler, link, path, session)")
    if what == "scheduler":
        name = _take(words, "scheduler name")
        if words[:1] == ["session"] and len(words) == 2:
            client.call("PATCH", f"/api/v1/sessions/{_quote(words[1])}", {"scheduler": name})
            print(f"session {words[1]} scheduler {name}")
            return EXIT_OK
        if words:
            raise _ApiFailure(f"set: unexpected {' '.join(words)!r}", EXIT_USAGE)
        client.call("PATCH", "/api/v1/policies", {"scheduler": name})
        print(f"scheduler {name}")
        return EXIT_OK
    if what == "class":
        cls = _take(words, "traffic class name")
        if _take(words, "'scheduler'") != "scheduler":
            raise _ApiFailure("set: expected 'class CLASS scheduler NAME'", EXIT_USAGE)
        name = _take(words, "scheduler name (or 'default')")
        value = None if name == "default" else name
        changes: dict[str, Any] = {"classes": {cls: {"scheduler": value}}}
        if words[:1] == ["session"] and len(words) == 2:
            client.call("PATCH", f"/api/v1/sessions/{_quote(words[1])}", changes)
            print(f"session {words[1]} class {cls} scheduler {name}")
            return EXIT_OK
        if words:
            raise _ApiFailure(f"set: unexpected {' '.join(words)!r}", EXIT_USAGE)
        client.call("PATCH", "/api/v1/policies", changes)
        print(f"class {cls} scheduler {name}")
        return EXIT_OK
    if what == "param":
        session = None
        if len(words) >= 2 and words[-2] == "session":
            session = words[-1]
            words = words[:-2]
        if not words or len(words) % 2:
            raise _ApiFailure("set: param needs NAME VALUE pairs", EXIT_USAGE)
        values: dict[str, object] = {}
        for name, text in zip(words[::2], words[1::2], strict=True):
            try:
                values[name] = int(text) if text.isdigit() else float(text)
            except ValueError:
                raise _ApiFailure(f"set: {name} {text!r} is not a number", EXIT_USAGE) from None
        where = f"/api/v1/sessions/{_quote(session)}" if session else "/api/v1/policies"
        client.call("PATCH", where, {"parameters": values})
        print(" ".join(f"{k} {v}" for k, v in values.items()))
        return EXIT_OK
    if what == "link":
        name = _take(words, "link name (or add/remove)")
        if name == "add":
            link = _take(words, "link name")
            body: dict[str, object] = {"name": link}
            while words:
                key = words.pop(0)
                value = _take(words, f"{key} value")
                if key in ("remote", "interface", "source"):
                    body[key] = value
                elif key == "rate":
                    body["rate_bps"] = _rate_word(value)
                elif key == "download":
                    body["download_bps"] = _rate_word(value)
                elif key == "metric":
                    body["metric"] = _int_word(value, "metric")
                else:
                    raise _ApiFailure(
                        f"set: unknown word {key!r}; expected remote, interface, source, rate,"
                        " download, metric",
                        EXIT_USAGE,
                    )
            if "remote" not in body:
                raise _ApiFailure("set: link add needs remote HOST:PORT", EXIT_USAGE)
            client.call("POST", "/api/v1/links", body)
            print(f"link {link} added")
            return EXIT_OK
        if name == "remove":
            link = _take(words, "link name")
            client.call("DELETE", f"/api/v1/links/{_quote(link)}")
            print(f"link {link} removed")
            return EXIT_OK
        body, _ = _changes(words, allow_remove=False)
        client.call("PATCH", f"/api/v1/links/{_quote(name)}", body)
        print(f"link {name} updated")
        return EXIT_OK
    if what == "path":
        sid = _take(words, "session id")
        pid = _int_word(_take(words, "path id"), "path id")
        body, remove = _changes(words, allow_remove=True)
        where = f"/api/v1/sessions/{_quote(sid)}/paths/{pid}"
        if body:
            client.call("PATCH", where, body)
        if remove:
            client.call("DELETE", where)
        print(f"session {sid} path {pid} {'removed' if remove else 'updated'}")
        return EXIT_OK
    if what == "session":
        sid = _take(words, "session id")
        action = _take(words, "action (close)")
        if action != "close" or words:
            raise _ApiFailure("set: expected 'session SESSION_ID close'", EXIT_USAGE)
        client.call("DELETE", f"/api/v1/sessions/{_quote(sid)}")
        print(f"session {sid} closed")
        return EXIT_OK
    raise _ApiFailure(
        f"set: unknown {what!r}; expected scheduler, class, param, link, path or session",
        EXIT_USAGE,
    )


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def _nack_text(params: dict[str, Any], counters: dict[str, Any]) -> str:
    """NACK recovery: the setting (with "auto", whether it is on now) and its counts."""
    mode = params["nack"]
    if mode == "off":
        return "off"
    if mode == "auto":
        mode = f"auto, {'on' if params.get('nack_active') else 'off'} now"
    return (
        f"{mode}; {counters.get('gaps_recovered', 0)} losses recovered here,"
        f" {counters.get('retransmitted', 0)} packets resent"
    )


def _equalize_text(params: dict[str, Any], counters: dict[str, Any]) -> str:
    """ ", equalize tcp (+35 ms, 12034 held)" for `braid show` (empty for older portals)."""
    mode = params.get("equalize")
    if mode is None:
        return ""
    if mode == "off":
        return ", equalize off"
    delay = float(params.get("equalize_delay") or 0.0)
    held = counters.get("equalized", 0)
    text = f", equalize {mode} (+{delay * 1000:.0f} ms, {held} held"
    if mode == "bulk":
        text += f"; {counters.get('equalize_flows', 0)} flows marked"
        if counters.get("equalize_ahead"):
            text += f", {counters['equalize_ahead']} ahead of PROBE_RTT so far"
        if counters.get("equalize_pairs"):
            pairs = counters["equalize_pairs"]
            text += (
                f"; {pairs} host pair{'s' if pairs != 1 else ''} remembered,"
                f" {counters.get('equalize_paired', 0)} connections given ack"
            )
        if "peer_holds" in params and not params["peer_holds"]:
            text += "; the peer does not hold: none marked"
    return text + ")"


def _compression_text(params: dict[str, Any], counters: dict[str, Any]) -> str | None:
    """`braid show`'s header compression line (None for a portal older than it)."""
    if "compress_headers" not in params:
        return None
    if not params["compress_headers"]:
        return "off"
    if params.get("peer_compacts") is False:
        return "on; the peer does not take compressed headers: none sent"
    compacted = counters.get("compacted", 0)
    sent = counters.get("packets_sent", 0)
    share = f" ({100 * compacted / sent:.0f} %)" if sent else ""
    return (
        f"on, {compacted} packets sent compressed{share},"
        f" {_human_bytes(counters.get('compact_saved', 0))} saved;"
        f" {counters.get('expanded', 0)} rebuilt"
    )


def _human_age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    parts.append(f"{seconds}s")
    return " ".join(parts[:2])


def _render(portal: dict[str, Any], sessions: list[dict[str, Any]], *, detail: bool) -> None:
    import time

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    p: dict[str, Any] = portal
    console.print(
        f"[bold green]portal[/]: [bold]{_escape(str(p['role']))}[/]  tunnel"
        f" {_escape(str(p['tunnel']))}  scheduler {_escape(str(p['scheduler']))}  up"
        f" {_human_age(float(p['uptime']))}  sessions {p['sessions']}"
    )
    now = time.time()
    if not detail:
        table = Table(box=None, pad_edge=False)
        for col in ("session", "peer", "paths up", "sent", "delivered", "up for", "egress"):
            table.add_column(col)
        for e in sessions:
            paths = e["paths"]
            up = sum(1 for x in paths if x["state"] == "up")
            table.add_row(
                e["session_id"],
                _escape(e["peer"] or "-"),
                f"{up}/{len(paths)}",
                _human_bytes(e["counters"]["bytes_sent"]),
                _human_bytes(e["counters"]["bytes_delivered"]),
                _human_age(now - e["up_since"]),
                _escape(", ".join(e.get("egress") or []) or "-"),
            )
        if sessions:
            console.print(table)
        return
    for entry in sessions:
        e = entry
        c = e["counters"]
        console.print()
        console.print(f"[bold yellow]session[/]: [bold]{e['session_id']}[/]")
        console.print(f"  [bold]peer[/]: {_escape(e['peer'] or '-')}")
        console.print(f"  [bold]up for[/]: {_human_age(now - e['up_since'])}")
        params = e["parameters"]
        console.print(
            f"  [bold]parameters[/]: scheduler {params['scheduler']}, keepalive"
            f" {params['keepalive_interval']:g}s, dead after {params['dead_interval']:g}s"
            + _equalize_text(params, c)
        )
        compression = _compression_text(params, c)
        if compression is not None:
            console.print(f"  [bold]header compression[/]: {compression}")
        # Switches: the line's label, and what it says when on (a portal older than the
        # switch does not report it: no line).
        switches = (
            (
                "clamp_mss",
                "TCP MSS clamping",
                f"to {params.get('clamp_mss')}, {c.get('mss_clamped', 0)} SYNs clamped",
            ),
            (
                "ack_filter",
                "ACK filtering",
                f"on, {c.get('acks_filtered', 0)} acknowledgements replaced a queued one",
            ),
            (
                "fair_queue",
                "fair queueing",
                f"on, {c.get('fair_flows', 0)} flows waiting ({c.get('fair_waiting', 0)} bytes)",
            ),
            (
                "sparse_priority",
                "sparse priority",
                f"on, {c.get('sparse_jumps', 0)} packets went ahead of a queue, "
                f"{c.get('sparse_queued', 0)} queued (the path's share used)",
            ),
            (
                "probe_rates",
                "rate probing",
                "on, "
                + _human_bytes(sum(int(x.get("fill_bytes", 0)) for x in e["paths"]))
                + " of fill PROBEs sent to find the links' rates",
            ),
        )
        for key, label, on in switches:
            if key in params:
                console.print(f"  [bold]{label}[/]: {on if params[key] else 'off'}")
        if "nack" in params:
            console.print(f"  [bold]loss recovery[/]: {_nack_text(params, c)}")
        if e.get("egress"):
            console.print(f"  [bold]egress[/]: {_escape(', '.join(e['egress']))}")
        console.print(
            f"  [bold]transfer[/]: {_human_bytes(c['bytes_sent'])} sent"
            f" ({c['packets_sent']} packets), {_human_bytes(c['bytes_delivered'])} delivered"
            f" ({c['packets_delivered']} packets)"
        )
        table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0))
        for col in (
            "  path",
            "name",
            "endpoint",
            "state",
            "metric",
            "rate",
            "rtt",
            "loss",
            "sent",
            "received",
        ):
            table.add_column(col)
        for x in e["paths"]:
            state = x["state"]
            colour = {"up": "green", "down": "red"}.get(state, "yellow")
            table.add_row(
                f"  {x['path_id']}",
                _escape(x["name"] or "-"),
                _escape(x["endpoint"] or "-"),
                f"[{colour}]{state}[/]",
                str(x["metric"]),
                _rates(x),
                f"{x['srtt'] * 1000:.1f} ms" if x["srtt"] is not None else "-",
                f"{x['loss_rate'] * 100:.2f}%" if x["loss_rate"] is not None else "-",
                _human_bytes(x["bytes_sent"]),
                _human_bytes(x["bytes_received"]),
            )
        console.print(table)
