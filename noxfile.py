"""The suite on every Python wirestack supports: `nox` (all of them), `nox -s tests-3.12`, `nox -- -k probe`.

One session per interpreter, each with its own virtual environment (`.nox/`) holding wirestack and its test
extras (built for that interpreter, the probe's C short path included), running `pytest -ra` plus whatever follows
`--`. The interpreters are found on the machine (pyenv's versions first, then PATH); a declared one that is
missing is skipped by nox, and under CI=true it fails the run instead (`.ci/run`).

`scripts/test` runs the default interpreter (with lint and mypy); `.ci/run` runs it, then this matrix for the
others (`WIRESTACK_NOX_SKIP=3.11`), see there for what each runs.
"""

from __future__ import annotations

import glob
import os

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]  # what wirestack's probe serves (runner.MIN_PYTHON .. MAX_PYTHON)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SKIP = {v for v in os.environ.get("WIRESTACK_NOX_SKIP", "").split(",") if v}

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = IN_CI


def _find_interpreters() -> None:
    """Put pyenv's builds of the declared versions first on PATH (the newest patch release of each), so nox finds
    them as `pythonX.Y`; without pyenv, PATH's own pythonX.Y are used."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = []
    for version in PYTHONS:
        builds = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
        builds.sort(key=lambda p: [int(x) if x.isdigit() else -1 for x in
                                   p.split(os.sep + "versions" + os.sep)[1].split(os.sep)[0].split(".")])
        if builds:
            found.append(os.path.dirname(builds[-1]))
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_find_interpreters()


@nox.session(python=[v for v in PYTHONS if v not in SKIP])
def tests(session: nox.Session) -> None:
    """Install wirestack with its test extras into this interpreter's venv and run the suite."""
    session.install("-q", "-e", ".[test]")
    session.run("python", "-c", "import sys; print('nox:', sys.version.split()[0], sys.executable)")
    session.run("python", "-m", "pytest", "-ra", *session.posargs, env={"PYTHONDONTWRITEBYTECODE": "1"})
