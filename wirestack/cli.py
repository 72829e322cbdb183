"""Command line: parse, check, wire the layers together, print. The only module that prints."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from . import __version__

EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        raise UsageError(message)


def _port(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}")
    value = int(text)
    if not 1 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"port {value} is out of range: use 1-65535 "
                                         "(or up to 4294967295 to see how getaddrinfo wraps it)")
    return value


def _width(text: str) -> int:
    if not text.isdigit() or not 40 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"width must be a number of columns from 40 to 1000, not {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    from .scenarios import catalogue

    parser = _Parser(prog="wirestack", description="See the network stack by breaking it: the traceback of a "
                     "failing Python client, lined up with the packets the kernel put on the wire.")
    parser.add_argument("--version", action="version", version=f"wirestack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("list", help="list the scenarios")
    for scenario in catalogue().values():
        p = sub.add_parser(scenario.name, help=scenario.lesson, description=scenario.lesson)
        p.add_argument("--host", default=None, help=f"host to connect to (default {scenario.default_host})")
        p.add_argument("--port", type=_port, default=None, help=f"port (default {scenario.default_port})")
        p.add_argument("-i", "--interface", default="lo", help="interface to capture on (default lo)")
        p.add_argument("-w", "--write", metavar="FILE", help="pcapng file (default captures/NAME-TIME.pcapng)")
        p.add_argument("--no-pcap", action="store_true", help="do not write a pcapng file")
        p.add_argument("--json", metavar="FILE", help="write the report as JSON (- for standard output)")
        p.add_argument("--force", action="store_true", help="overwrite existing output files")
        p.add_argument("--no-color", action="store_true", help="no colours (also: NO_COLOR, or not a terminal)")
        p.add_argument("--width", type=_width, default=None, help="columns for the report")
    return parser


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"wirestack: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except UsageError as exc:
        return _fail(f"{exc} (see wirestack --help)")
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE
    if args.command == "list":
        from .scenarios import catalogue

        for s in catalogue().values():
            print(f"{s.name:<10} {s.lesson}")
        return 0
    return _run_scenario(args)


def _run_scenario(args: argparse.Namespace) -> int:
    from contextlib import AbstractContextManager, nullcontext

    from .capture import CaptureError
    from .files import OutputError, check_writable, default_path, write
    from .model import Trace
    from .peers import PeerError, running
    from .progress import Live, Watch, columns
    from .scenarios import catalogue
    from .tracer import Interrupted, Stop, run_traced, stop_on_signals

    scenario = catalogue()[args.command]
    pcap: Path | None = None
    if not args.no_pcap:
        pcap = Path(args.write) if args.write else default_path(scenario.name)
    json_path = Path(args.json) if args.json and args.json != "-" else None
    try:
        for path in (p for p in (pcap, json_path) if p is not None):
            if path == pcap and not args.write:
                continue  # the default folder is created on demand
            check_writable(path, args.force)
    except OutputError as exc:
        return _fail(str(exc))
    host = scenario.default_host if args.host is None else args.host
    kind = scenario.peer_for(args.port is not None)
    if kind is not None and args.port is not None and args.port > 65535:
        return _fail(f"port {args.port} is out of range for the peer of {scenario.name}: use 1-65535")
    for var in [v for v in os.environ if v.lower() in ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")]:
        del os.environ[var]  # the client's traffic stays on loopback, never via a proxy

    def err(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    code = 0
    trace: Trace | None = None
    stop_on_signals()
    peer: AbstractContextManager[int | None] = (
        running(kind, host, args.port or 0) if kind is not None
        else nullcontext(scenario.default_port if args.port is None else args.port))
    try:
        with peer as port:
            assert port is not None
            live_status = sys.stderr.isatty()  # the status line is redrawn in place: terminals only
            width = columns(sys.stderr.fileno()) if live_status else 80
            with Live(Watch(port), err, scenario.name, status=live_status, columns=width) as live:
                trace = run_traced(scenario.client(host, port), args.interface, timeout=scenario.limit,
                                   on_frame=live.on_frame)
    except (CaptureError, PeerError) as exc:
        return _fail(str(exc))
    except Interrupted as exc:
        trace, code = exc.trace, 128 + exc.signum
        print(f"wirestack: interrupted: saving what was recorded ({len(trace.packets)} packets)", file=sys.stderr)
    except Stop as exc:  # before the client ran, or while the peer was stopped
        if trace is None:
            return _fail("interrupted before the client ran", 128 + exc.signum)
        code = 128 + exc.signum

    from dataclasses import replace

    from .report import build_report, to_json

    if pcap is not None:
        trace = replace(trace, capture=replace(trace.capture, file=str(pcap)))
    report = build_report(trace)
    try:
        if pcap is not None:
            from .pcapng import blocks

            write(pcap, blocks(report), force=args.force, create_folder=not args.write)
        if json_path is not None:
            write(json_path, [json.dumps(to_json(report), indent=2).encode() + b"\n"], force=args.force)
    except OutputError as exc:
        return _fail(str(exc))

    if args.json == "-":
        sys.stdout.write(json.dumps(to_json(report), indent=2) + "\n")
    else:
        from .render import render_text

        color = not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
        width = args.width or (shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100)
        sys.stdout.write(render_text(report, width=width, color=color))
    if pcap is not None:
        print(f"wirestack: wrote {pcap}", file=sys.stderr)
    return code


def run() -> None:
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 141
    sys.exit(code)
