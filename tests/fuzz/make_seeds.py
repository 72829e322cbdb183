"""Remake the fuzzer's seeds (tests/fuzz/seeds/) with the real tool. Needs root (capture); traffic on loopback.

    sudo .venv/bin/python tests/fuzz/make_seeds.py

- smtp.pcapng: `wirestack smtp -w` (a refused SMTP connect: kernel layer, a trace document);
- names.pcapng: `wirestack run -w` of programs/names.py (hostile text in every recorded name, a chain of
  exceptions, threads, TCP and UDP);
- interrupted.pcapng: the same program, the analysis interrupted by SIGINT (a "recording" document);
- plain.pcap / plain.pcapng: smtp-ok's packets through editcap (classic pcap, and a pcapng without our options).

The seeds are committed so that the fuzzer runs anywhere, without root.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SEEDS = HERE / "seeds"


def wirestack(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "wirestack", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def main() -> int:
    if os.geteuid() != 0:
        print("make_seeds: capturing needs root", file=sys.stderr)
        return 2
    SEEDS.mkdir(exist_ok=True)
    program = str(HERE / "programs" / "names.py")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, args in (("smtp", ["smtp"]), ("names", ["run", program]), ("smtp-ok", ["smtp-ok"])):
            proc = wirestack(*args[:1], "-w", f"{name}.pcapng", "--no-color", *args[1:], cwd=work)
            _, err = proc.communicate(timeout=120)
            if not (work / f"{name}.pcapng").exists():
                print(f"make_seeds: {name} failed: {err[-500:]}", file=sys.stderr)
                return 1
        # the analysis interrupted: WIRESTACK_PAUSE_AT=analyse waits a second there, and SIGINT then saves the
        # recording unanalysed
        proc = wirestack("run", "-w", "interrupted.pcapng", "--no-color", program, cwd=work,
                         env={"WIRESTACK_PAUSE_AT": "analyse"})
        assert proc.stderr is not None
        for line in proc.stderr:
            if "pausing at analyse" in line:
                proc.send_signal(signal.SIGINT)
                break
        proc.communicate(timeout=60)
        for name in ("smtp", "names", "interrupted"):
            shutil.copyfile(work / f"{name}.pcapng", SEEDS / f"{name}.pcapng")
        subprocess.run(["editcap", "-F", "pcap", str(work / "smtp-ok.pcapng"), str(SEEDS / "plain.pcap")], check=True)
        subprocess.run(["editcap", "-F", "pcapng", str(SEEDS / "plain.pcap"), str(SEEDS / "plain.pcapng")],
                       check=True)
    for p in sorted(SEEDS.iterdir()):
        os.chmod(p, 0o644)
        print(f"{p.name}: {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
