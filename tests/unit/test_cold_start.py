"""What `netdoctor --help` and `netdoctor check --help` import (issue 13 item 5): neither the lab,
PyYAML, the policy engine, kubernetes nor scapy, nor rich or pydantic (typer's rich help and its
pydantic coercion cost more than the rest of the start-up). Each run is a fresh interpreter; the
time it takes is benchmarks/cold_start.py's business, not a test's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("netdoctor.lab", "netdoctor.policy", "netdoctor.probe", "netdoctor.cluster.kube", "yaml", "kubernetes",
             "scapy", "rich", "pydantic")
PROGRAM = """
import contextlib, io, json, sys
from netdoctor.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "help": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def imported_by(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROGRAM, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout)


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


@pytest.mark.parametrize("argv", [("--help",), ("check", "--help"), ()])
def test_help_imports_nothing_heavy(argv):
    run = imported_by(*argv)
    assert "Usage: netdoctor" in run["help"]
    assert heavy(run["modules"]) == []


def test_root_help_lists_every_command_group_without_importing_it():
    run = imported_by("--help")
    for command in ("check", "cleanup", "completion", "lab", "policy"):
        assert f"\n  {command} " in run["help"]
    assert "A disposable cluster made of real Linux networking." in run["help"]


def test_a_group_is_imported_when_named():
    run = imported_by("lab", "--help")
    assert "netdoctor.lab.cli" in run["modules"]
    assert "  up " in run["help"] and "  break " in run["help"]
    assert "A disposable cluster made of real Linux networking." in run["help"]


def test_the_failing_guard_sees_a_heavy_import():
    """The check itself can fail: a run that imports the lab is caught."""
    run = imported_by("lab", "faults", "--help")
    assert "netdoctor.lab.cli" in heavy(run["modules"])
