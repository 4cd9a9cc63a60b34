"""``braid lab ...``: run scenarios, the demo, the evaluation; clean up leftovers.

Exit codes: 0 done, 1 a series or run failed, 2 bad usage / environment (one line says what
to do), 130 interrupted. Every namespace and process of the lab is removed however it ends.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from rich.console import Console

from braid.lab.netns import LabError, LabSetupError, check_environment, clean
from braid.lab.scenario import ScenarioError, bundled_scenarios, load_scenario

console = Console(highlight=False, soft_wrap=True)


def _error(message: str) -> None:
    """One line on stderr, never wrapped."""
    sys.stderr.write(message.replace("\n", " ") + "\n")
    sys.stderr.flush()


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The ``braid lab`` argument parser."""
    parser = _Parser(
        prog="braid lab", description="The braid lab: emulated links, baselines, plots."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="run a scenario (a TOML file or a bundled name)")
    run.add_argument("scenario", help=f"path or bundled name ({', '.join(bundled_scenarios())})")
    run.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    run.add_argument(
        "--plot", type=Path, metavar="FILE", help="write a PNG of throughput over time"
    )
    demo = sub.add_parser(
        "demo", help="two unequal links: each alone, MPTCP, braid, then a link cut"
    )
    demo.add_argument("--plot", type=Path, default=Path("braid-lab-demo.png"), metavar="FILE")
    demo.add_argument("--json", type=Path, metavar="FILE")
    evaluation = sub.add_parser("eval", help="reproduce the dissertation's evaluation")
    evaluation.add_argument("--out", type=Path, default=Path("docs/evaluation.md"), metavar="FILE")
    evaluation.add_argument("--quick", action="store_true", help="shorter runs, one repeat")
    evaluation.add_argument("--only", action="append", metavar="CASE", help="run only this case")
    rec = sub.add_parser(
        "record",
        help="record gap traces of the braid series for `braid train` (NACK off)",
    )
    rec.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="paths or bundled names")
    rec.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="where the JSONL files go"
    )
    rec.add_argument(
        "--repeat", type=_count, metavar="N", help="runs per scenario (default: its repeat)"
    )
    rec.add_argument(
        "--duration",
        type=_seconds,
        metavar="SECONDS",
        help="seconds of traffic per run (default: the scenario's duration)",
    )
    sub.add_parser("clean", help="remove namespaces and processes left by earlier lab runs")
    sub.add_parser("list", help="list the bundled scenarios")
    return parser


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, 1..100")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1.0 <= value <= 3600.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, 1..3600")
    return value


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def progress(message: str) -> None:
    """Print one progress line."""
    console.print(f"[dim]lab:[/dim] {message}")


def main(argv: list[str]) -> int:
    """Entry point of ``braid lab ARGS`` (argv excludes "braid lab")."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        _error(str(exc))
        return 2
    if args.command is None:
        build_parser().print_help()
        return 2
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _dispatch(args)
    except (LabError, ScenarioError) as exc:
        _error(f"braid lab: {exc}")
        return 2 if isinstance(exc, ScenarioError | LabSetupError) else 1
    except KeyboardInterrupt:
        _error("braid lab: interrupted; lab removed")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "list":
        for name in bundled_scenarios():
            scenario = load_scenario(name)
            console.print(f"{name:24} {scenario.description}", markup=False)
        return 0
    if args.command == "clean":
        check_environment()
        removed, kept = clean()
        for name in removed:
            console.print(f"removed {name}", markup=False)
        for name in kept:
            console.print(f"kept {name} (its lab is still running)", markup=False)
        if not removed and not kept:
            console.print("nothing to clean")
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "record":
        from braid.lab.record import record

        scenarios = [load_scenario(name) for name in args.scenarios]
        check_environment()
        return record(
            scenarios,
            args.out,
            repeat=args.repeat,
            duration=args.duration,
            console=console,
            progress=progress,
        )
    if args.command == "demo":
        from braid.lab.demo import run_demo

        return run_demo(
            plot_path=args.plot, json_path=args.json, console=console, progress=progress
        )
    if args.command == "eval":
        from braid.lab.evaluation import run_evaluation

        return run_evaluation(
            out=args.out, quick=args.quick, only=args.only, console=console, progress=progress
        )
    raise AssertionError(args.command)


def _run(args: argparse.Namespace) -> int:
    from braid.lab.experiment import run_scenarios
    from braid.lab.report import plot, rich_table, write_json

    scenario = load_scenario(args.scenario)
    check_environment(mptcp="mptcp" in scenario.series_names())
    progress(
        f"{scenario.name}: {len(scenario.links)} links, series {', '.join(scenario.series_names())}"
    )
    (result,) = run_scenarios([scenario], progress=progress)
    console.print(rich_table(result))
    if result.scenario.events:
        from braid.lab.evaluation import event_finding

        console.print(event_finding(result), markup=False, highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    if args.json:
        write_json([result], args.json)
        console.print(f"wrote {args.json}")
    if args.plot:
        plot([result], args.plot)
        console.print(f"plot: {args.plot}")
    return 1 if result.notes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
