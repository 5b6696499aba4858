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


def test_a_check_s_arguments_are_read_without_pydantic():
    """typer converts each parameter through a pydantic TypeAdapter unless netdoctor.cli's plain
    converter takes it (~0.05 s of every check, pydantic's import beside): strings, numbers, a list
    of targets, flags, options left unset. The check ends at its own --timeout check, before it
    connects (the kubernetes client imports pydantic by itself)."""
    run = imported_by("check", "svc/api", "svc/web", "-n", "shop", "--max-nodes", "3", "--from", "deploy/x",
                      "--keep", "--timeout", "0")
    assert run["code"] == 2
    assert [m for m in run["modules"] if m.startswith(("pydantic", "typer._adapters"))] == []


def test_a_path_option_given_a_value_is_still_typer_s_to_check(tmp_path):
    """A path keeps typer's own conversion (its checks: --pcap is a directory, not a file)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = subprocess.run([sys.executable, "-m", "netdoctor", "check", "svc/api", "-n", "shop", "--pcap", str(a_file)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is a file" in done.stderr, done.stderr


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
