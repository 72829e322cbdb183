"""Command line: parse, check, wire the layers together, print. The only module that prints.

It is long because it holds the argument parser of every command; the work is in `commands/`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._version import __version__
from .errors import UsageError as UsageError

EXIT_USAGE = 2


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


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, not {text!r}")
    return int(text)


def _width(text: str) -> int:
    if not text.isdigit() or not 40 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"width must be a number of columns from 40 to 1000, not {text!r}")
    return int(text)


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interface", default="lo", help="interface to capture on (default lo)")
    p.add_argument("-w", "--write", metavar="FILE", help="pcapng file (default captures/NAME-TIME.pcapng)")
    p.add_argument("--no-pcap", action="store_true", help="do not write a pcapng file")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON (- for standard output)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("--no-color", action="store_true", help="no colours (also: NO_COLOR, or not a terminal)")
    p.add_argument("--width", type=_width, default=None, help="columns for the report")
    p.add_argument("--no-kernel", action="store_true", help="do not record the kernel's tracepoints")
    ns = p.add_mutually_exclusive_group()
    ns.add_argument("--netns", action="store_true", help="run in a private user + network namespace (no sudo "
                    "needed; also as root, for a capture with no other traffic)")
    ns.add_argument("--no-netns", action="store_true", help="never fall back to a private namespace")
    _capture_option(p)
    p.add_argument("--all", action="store_true", help="show every failed call and packet, even in a large run")
    p.add_argument("--max-packets", type=_positive, default=None, metavar="N",
                   help="keep at most N frames (default 5,000,000), like tcpdump -c")
    p.add_argument("--max-calls", type=_positive, default=None, metavar="N",
                   help="keep at most N socket calls (default 1,000,000); later ones are counted, not kept")
    p.add_argument("-s", "--snaplen", type=_positive, default=None, metavar="BYTES",
                   help="keep at most BYTES of each frame (default 262144), like tcpdump -s")
    _picture_options(p)


def _capture_option(p: argparse.ArgumentParser) -> None:
    from .record.source import WANTS

    p.add_argument("--capture", choices=WANTS, default="auto", help="how to capture: a raw socket (root or "
                   "CAP_NET_RAW), Wireshark's dumpcap (a member of its group), or a private namespace (netns, "
                   "no sudo); default: the first of these this user may use")


def _picture_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--svg", metavar="FILE", help="also write the report as an SVG picture with a ladder diagram")
    p.add_argument("--html", metavar="FILE", help="also write the report as an HTML page with a ladder diagram")
    p.add_argument("--open", action="store_true", help="open the capture in Wireshark afterwards")


RUN_USAGE = "wirestack run [OPTIONS] (SCRIPT | -m MODULE | -c CODE) [ARGS...]"


# commands whose parser needs nothing else: `wirestack run` and `read` build only their own (the others bring the
# scenario catalogue and the shell in, a tenth of a second of imports before the program can start)
_ALONE = ("run", "read", "wireshark")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; for a command of `_ALONE`, only that command's."""
    alone = command if command in _ALONE else None
    parser = _Parser(prog="wirestack", description="See the network stack by breaking it: the traceback of a "
                     "failing Python client, lined up with the packets the kernel put on the wire.")
    parser.add_argument("--version", action="version", version=f"wirestack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    if alone is None:
        sub.add_parser("list", help="list the scenarios")
    if alone in (None, "run"):
        _run_parser(sub)
    if alone is None:
        from .commands.shell import add_parser as add_shell

        add_shell(sub, _capture_option)
    if alone in (None, "read"):
        _read_parser(sub)
    if alone in (None, "wireshark"):
        _wireshark_parser(sub)
    if alone is None:
        from .labs.scenarios import catalogue

        for scenario in catalogue().values():
            p = sub.add_parser(scenario.name, help=scenario.lesson, description=scenario.lesson)
            p.add_argument("--host", default=None, help=f"host to connect to (default {scenario.default_host})")
            port_default = scenario.default_port if scenario.default_port is not None else "the peer's ephemeral port"
            p.add_argument("--port", type=_port, default=None, help=f"port (default {port_default})")
            _output_options(p)
    return parser


def _run_parser(sub: Any) -> None:
    run = sub.add_parser("run", help="run a Python program traced and captured", usage=RUN_USAGE,
                         description="Run a Python program as `python` would (argv, __main__, stdio, exit status), "
                         "with its socket calls recorded and its packets captured. The report goes to stderr.")
    _output_options(run)
    run.add_argument("--as-root", action="store_true", help="under sudo, run the program as root (default: as the "
                     "invoking user)")
    run.add_argument("--python", metavar="PATH", default=None, help="interpreter for the program (default: "
                     "wirestack's own)")
    run.add_argument("--duration", "--timeout", dest="timeout", type=float, default=None, metavar="SECONDS",
                     help="stop the program after this many seconds (SIGINT, then SIGTERM, then SIGKILL)")


def _read_parser(sub: Any) -> None:
    read = sub.add_parser("read", help="the report of a capture file: wirestack's own, or any pcap/pcapng",
                          description="Render the report stored in a wirestack pcapng (the same text and JSON as "
                          "the live run; no root, nothing re-run), or what the wire alone shows for any other "
                          "pcap/pcapng.")
    read.add_argument("file", metavar="FILE", help="a pcap or pcapng file")
    read.add_argument("--peer", metavar="OTHER", help="the other end's capture of the same exchange (tcpdump, "
                      "dumpcap): lined up by packet content, its clock offset estimated, and what one side "
                      "sent and the other never saw")
    read.add_argument("--packet", metavar="N", action="append", default=None,
                      help="show these packets whole instead of the report (3, 9-12, 3,5,9-12): each layer as "
                      "scapy decodes it, and the call it is paired with")
    read.add_argument("--json", metavar="FILE", help="write the report as JSON (- for standard output)")
    read.add_argument("--force", action="store_true", help="overwrite existing output files")
    read.add_argument("--no-color", action="store_true", help="no colours (also: NO_COLOR, or not a terminal)")
    read.add_argument("--width", type=_width, default=None, help="columns for the report")
    _picture_options(read)


def _wireshark_parser(sub: Any) -> None:
    shark = sub.add_parser("wireshark", help="the Lua dissector that makes wirestack.* fields filterable",
                           description="wirestack's packet comments carry key=value pairs; its Lua post-dissector "
                           "turns them into the fields wirestack.call, .op, .role, .errno, .errname, .socket, "
                           ".thread and .frame.")
    what = shark.add_mutually_exclusive_group(required=True)
    what.add_argument("--path", action="store_true", help="print the path of the Lua dissector")
    what.add_argument("--install", action="store_true", help="copy it to your personal Wireshark plugin folder")


# run's options that take a value
_VALUED = {"-i", "--interface", "-w", "--write", "--json", "--width", "--python", "--timeout", "--duration", "-s",
           "--snaplen",
           "--max-packets", "--max-calls", "--svg", "--html", "--capture"}


def split_run_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split `run`'s arguments into wirestack's options and the program (`SCRIPT ARGS`, `-m MOD ARGS`,
    `-c CODE ARGS`): everything from the program on belongs to the program, as with python itself."""
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-m", "-c"):
            return list(argv[:i]), list(argv[i:])
        if a == "--":
            return list(argv[:i]), list(argv[i + 1:])
        if not a.startswith("-") or a == "-":
            return list(argv[:i]), list(argv[i:])
        i += 2 if a in _VALUED else 1
    return list(argv), []


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    from .output.sanitize import clean

    # one line, whatever it quotes: a file name or a value from data may hold newlines and terminal controls
    print(f"wirestack: {clean(message, 2000)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    original = list(argv)
    program: list[str] = []
    if argv[:1] == ["run"]:
        options, program = split_run_argv(argv[1:])
        argv = ["run", *options]
    try:
        args = _parser(argv[0] if argv else None).parse_args(argv)
    except UsageError as exc:
        return _fail(f"{exc} (see wirestack --help)")
    if args.command is None:
        _parser().print_help()
        return EXIT_USAGE
    if args.command == "list":
        from .labs.scenarios import catalogue

        groups = [(title, [s for s in catalogue().values() if (s.lab is not None) == network]) for title, network in
                  (("on loopback (one host)", False), ("on a network of their own (client, router, server)", True))]
        for n, (title, scenarios) in enumerate(groups):
            print(("\n" if n else "") + title)
            for s in scenarios:
                print(f"  {s.name:<15} {s.lesson}")
        return 0
    if args.command == "read":
        return _read(args)
    if args.command == "wireshark":
        return _wireshark(args)
    from .record.netns import NamespaceError, inside, loopback_up, run_inside
    from .record.source import needs_namespace

    try:  # capturing commands: without the privilege, in a private namespace of our own
        if inside():
            loopback_up()
        elif args.netns or (not args.no_netns and needs_namespace(args.capture)):
            return run_inside(original)
    except NamespaceError as exc:
        return _fail(str(exc))
    if args.command == "shell":
        from .commands.shell import main as shell

        return shell(args)
    if args.command == "run":
        return _run_program(args, program)
    return _run_scenario(args)


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    """The capture options every run shares (kernel layer, frame cap, snap length)."""
    out: dict[str, Any] = {"kernel": not args.no_kernel, "source": args.capture}
    out.update({k: v for k, v in (("max_packets", args.max_packets), ("snaplen", args.snaplen),
                                  ("max_calls", args.max_calls)) if v})
    return out


def _warm(args: argparse.Namespace) -> Callable[[], None]:
    """The analysis' imports, made while the program runs (see `commands.pipeline.preload`)."""
    from functools import partial

    from .commands.pipeline import preload

    return partial(preload, bool(args.json))


def _run_scenario(args: argparse.Namespace) -> int:
    from contextlib import AbstractContextManager, nullcontext

    from .labs.peers import running
    from .labs.progress import Live, Watch, columns
    from .labs.scenarios import catalogue
    from .record.runner import Recording, run_traced
    from .record.spool import Spool

    scenario = catalogue()[args.command]
    if scenario.lab is not None:  # a network of its own: see labs.network.lab
        from .labs.network.lab import run_lab

        return _execute(args, lambda spool: run_lab(scenario, args.host, args.port, spool=spool, **_limits(args)),
                        scenario.name)
    host = scenario.default_host if args.host is None else args.host
    kind = scenario.peer_for(args.port is not None)
    if kind is not None and args.port is not None and args.port > 65535:
        return _fail(f"port {args.port} is out of range for the peer of {scenario.name}: use 1-65535")
    for var in [v for v in os.environ if v.lower() in ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")]:
        del os.environ[var]  # the client's traffic stays on loopback, never via a proxy

    def err(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def runner(spool: Spool | None) -> Recording:
        peer: AbstractContextManager[int | None] = (
            running(kind, host, args.port or 0) if kind is not None
            else nullcontext(scenario.default_port if args.port is None else args.port))
        with peer as port:
            assert port is not None
            live_status = sys.stderr.isatty()  # the status line is redrawn in place: terminals only
            width = columns(sys.stderr.fileno()) if live_status else 80
            with Live(Watch(port), err, scenario.name, status=live_status, columns=width) as live:
                return run_traced(scenario.client(host, port), args.interface, timeout=scenario.limit,
                                  on_frame=live.on_frame, spool=spool, warm=_warm(args), **_limits(args))

    return _execute(args, runner, scenario.name)


def _run_program(args: argparse.Namespace, program: list[str]) -> int:
    from .output.files import invoking_user
    from .record.runner import Client, Recording
    from .record.spool import Spool

    if not program or program[0] in ("-m", "-c") and len(program) < 2:
        return _fail(f"run needs a program: {RUN_USAGE}")
    if program[0] in ("-m", "-c"):
        mode, target, rest = {"-m": "module", "-c": "command"}[program[0]], program[1], program[2:]
        stem = target.rsplit(".", 1)[-1] if mode == "module" else "command"
    else:
        mode, target, rest = "script", program[0], program[1:]
        if not os.path.isfile(target):
            return _fail(f"can't open file {target!r}: no such file")
        stem = Path(target).stem
    python = args.python or sys.executable
    if args.python and not shutil.which(args.python):
        return _fail(f"no such interpreter: {args.python}")
    if args.timeout is not None and args.timeout <= 0:
        return _fail("--timeout must be a positive number of seconds")
    client = Client(f"run {stem}", mode=mode, target=target, args=tuple(rest), python=shutil.which(python) or python)
    user = None if args.as_root else invoking_user()

    def runner(spool: Spool | None) -> Recording:
        from .record.runner import run_traced

        return run_traced(client, args.interface, timeout=args.timeout, user=user, spool=spool, warm=_warm(args),
                          **_limits(args))

    return _execute(args, runner, stem, program=True)


def _execute(args: argparse.Namespace, runner: Callable[[Any], Any], name: str, *, program: bool = False) -> int:
    """Trace with `runner(spool)` (a scenario with its peer, or a program), then analyse, write the files and show
    the report (`commands.pipeline`). For a program (`run`), the report goes to stderr (stdout is the
    program's) and wirestack exits with the program's status."""
    from .commands.pipeline import Outputs, Phases, analyse, spool_for
    from .errors import NetworkError
    from .labs.peers import PeerError
    from .output.files import OutputError, Target, default_path
    from .record.capture import CaptureError
    from .record.runner import (
        Interrupted,
        ProgramError,
        Stop,
        defer_signals,
        deferred_signal,
        pause_for_tests,
        stop_on_signals,
    )

    if args.snaplen is not None and args.snaplen < 64:
        return _fail("--snaplen must be at least 64 bytes (headers and wirestack's own end marker)")
    outputs = Outputs()
    try:
        if not args.no_pcap:
            path = Path(args.write) if args.write else default_path(name)
            outputs.pcap = Target(path, args.force, create_folder=not args.write).open_folder()
        if args.json and args.json != "-":
            outputs.json = Target(Path(args.json), args.force).open_folder()
        for kind in ("svg", "html"):
            if getattr(args, kind, None):
                outputs.pictures.append((Target(Path(getattr(args, kind)), args.force).open_folder(), kind))
        _check_extras(args, outputs.pcap.path if outputs.pcap else None)
    except OutputError as exc:
        outputs.close()
        return _fail(str(exc))

    code = 0
    stop_on_signals()
    _no_cycle_collection()  # also while the program runs: the records read meanwhile are long-lived too
    spool = spool_for(outputs)
    try:
        try:
            recording = runner(spool)
        except (CaptureError, ProgramError, PeerError, NetworkError) as exc:
            outputs.close()
            return _fail(str(exc))
        except Interrupted as exc:
            recording, code = exc.recording, 128 + exc.signum
            print(f"wirestack: interrupted: the program was stopped; analysing what was recorded "
                  f"({len(recording.frames):,} frames)", file=sys.stderr)
        except Stop as exc:  # before the client ran (while the peer started), or while the peer was stopped
            outputs.close()
            return _fail("interrupted before the client ran", 128 + exc.signum)
        from .record.source import capture_note

        if capture_note():  # which capture backend ran, unless the usual raw socket (see record.source)
            recording.notes.insert(0, str(capture_note()))
        if program and not code and recording.returncode is not None:
            code = recording.returncode if recording.returncode >= 0 else 128 - recording.returncode
        pause_for_tests("analyse")
        phases = Phases(sys.stderr, sys.stderr.isatty())
        from .record.tshark import with_app_layer

        result = analyse(recording, outputs, phases, with_app_layer, args.force, pending=deferred_signal())
        defer_signals()  # the files are complete: showing the report takes no time, then a signal is answered
    finally:
        if spool is not None:
            spool.remove()
    if result.signum:
        return 128 + result.signum
    report = result.report
    assert report is not None
    if args.json == "-":
        from .output.json import JsonRenderer

        sys.stdout.write(JsonRenderer().render(report))
    else:
        _show(report, sys.stderr if program else sys.stdout, args)
    if outputs.pcap is not None and outputs.pcap.path in result.written:
        print(f"wirestack: wrote {outputs.pcap.path}", file=sys.stderr)
    if result.error is not None:
        return _fail(result.error)
    if args.open and outputs.pcap is not None and outputs.pcap.path in result.written:
        _open_in_wireshark(outputs.pcap.path)
    late = deferred_signal()
    if late and not code:
        print(f"wirestack: interrupted (signal {late}) after the files were written", file=sys.stderr)
        return 128 + late
    return code


def _no_cycle_collection() -> None:
    """The analysis builds a few hundred thousand long-lived objects and no reference cycles worth collecting:
    the cycle collector's full passes over them were 40% of its time (10,000 refused connects: 8.0 s with it,
    4.5 s without). The command ends soon after the analysis does."""
    import gc

    gc.freeze()
    gc.disable()


def _show(report: Any, out: Any, args: argparse.Namespace) -> None:
    from .output.text import TextRenderer

    tty = out.isatty()
    color = not args.no_color and "NO_COLOR" not in os.environ and tty
    width = args.width or (shutil.get_terminal_size((100, 24)).columns if tty else 100)
    out.write(TextRenderer(width, color, getattr(args, "all", False)).render(report))
    out.flush()


def _write_outputs(args: argparse.Namespace, report: Any, pcap: Path | None, json_path: Path | None) -> str | None:
    """Every file asked for; the first error as one line (the report is still shown: nothing recorded is lost
    from view)."""
    from .output.files import OutputError, write
    from .output.renderers import by_name, render_bytes

    jobs: list[tuple[Path, str, bool]] = []
    if pcap is not None:
        jobs.append((pcap, "pcapng", not args.write))
    if json_path is not None:
        jobs.append((json_path, "json", False))
    for name in ("svg", "html"):
        if getattr(args, name, None):
            jobs.append((Path(getattr(args, name)), name, False))
    for path, kind, folder in jobs:
        try:
            if kind == "pcapng":
                from .output.annotate import blocks

                write(path, blocks(report), force=args.force, create_folder=folder)
            else:
                write(path, [render_bytes(by_name(kind), report)], force=args.force)
        except OutputError as exc:
            return str(exc)
    return None


# --- read, wireshark, pictures -------------------------------------------------------------------------------

def _check_extras(args: argparse.Namespace, pcap: Path | None) -> None:
    """Before anything runs: the picture files can be written, and --open can be honoured."""
    from .output.files import OutputError, check_writable

    for name in ("svg", "html"):
        value = getattr(args, name, None)
        if value:
            check_writable(Path(value), args.force)
    if getattr(args, "open", False):
        from .commands.wireshark import find_wireshark

        if getattr(args, "no_pcap", False) or pcap is None:
            raise OutputError("--open needs a capture file: drop --no-pcap")
        if find_wireshark() is None:
            raise OutputError("--open: Wireshark is not installed (apt-get install wireshark), or drop --open")


def _open_in_wireshark(path: Path) -> None:
    from .commands.wireshark import WiresharkError, open_capture

    try:
        open_capture(path)
        print(f"wirestack: opening {path} in Wireshark", file=sys.stderr)
    except WiresharkError as exc:
        print(f"wirestack: {exc}", file=sys.stderr)


def _read(args: argparse.Namespace) -> int:
    from .commands.read import load
    from .formats.reader import ReadError
    from .output.files import OutputError, check_writable

    json_path = Path(args.json) if args.json and args.json != "-" else None
    if args.packet and (args.json or args.svg or args.html or args.open):
        return _fail("--packet shows packets on the terminal: it takes no --json, --svg, --html or --open")
    try:
        if json_path is not None:
            check_writable(json_path, args.force)
        _check_extras(args, Path(args.file))
        _no_cycle_collection()
        loaded = load(args.file, peer=args.peer)
        if args.packet:
            from .output.dissection import SelectionError, dissection_text, missing_scapy, selection

            if (why := missing_scapy()) is not None:
                return _fail(why)
            try:
                ids = selection(args.packet, len(loaded.report.trace.packets))
            except SelectionError as exc:
                return _fail(str(exc))
            width = args.width or (shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100)
            sys.stdout.write(dissection_text(loaded.report, ids, width))
            return _fail(f"{args.file} is {loaded.error}: what comes before is shown") if loaded.error else 0
    except (ReadError, OutputError) as exc:
        return _fail(str(exc))
    args.no_pcap, args.write = True, None
    failed = _write_outputs(args, loaded.report, None, json_path)
    if failed is not None:
        return _fail(failed)
    if args.json == "-":
        from .output.json import JsonRenderer

        sys.stdout.write(JsonRenderer().render(loaded.report))
    else:
        _show(loaded.report, sys.stdout, args)
    if args.open:
        _open_in_wireshark(Path(args.file))
    if loaded.error:
        return _fail(f"{args.file} is {loaded.error}: the report shows what comes before")
    return 0


def _wireshark(args: argparse.Namespace) -> int:
    from .commands.wireshark import WiresharkError, install, lua_path

    if args.path:
        print(lua_path())
        return 0
    try:
        target = install()
    except WiresharkError as exc:
        return _fail(str(exc))
    print(f"wirestack: installed {target}; restart Wireshark, then filter e.g. wirestack.errno == 111")
    return 0


def run() -> None:
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 141
    sys.exit(code)
