"""The lab daemon's answer to `lab break`/`lab fix` (netdoctor.lab.controller.FaultManager): written
once the change's effects settled, or after SETTLE_TIMEOUT as still settling."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

from netdoctor.lab import controller
from netdoctor.lab.controller import FaultManager
from netdoctor.lab.faults import Fault
from netdoctor.lab.state import generation, write_json_atomically


def manager(tmp_path, desired: dict) -> tuple[FaultManager, SimpleNamespace]:
    paths = SimpleNamespace(faults=tmp_path / "faults.json", applied_faults=tmp_path / "applied.json")
    paths.faults.write_text(json.dumps(desired))
    return FaultManager(cluster=None, paths=paths), paths


def test_the_answer_waits_for_the_effects_to_settle(tmp_path):
    faults, paths = manager(tmp_path, {})
    faults.reconcile()
    asked = []
    faults.report(lambda since: asked.append(since) or False)
    assert not paths.applied_faults.exists() and asked  # asked since when, not answered yet
    faults.report(lambda since: True)
    answer = json.loads(paths.applied_faults.read_text())
    assert answer["settled"] is True and answer["generation"] == generation(paths.faults)
    paths.applied_faults.unlink()
    faults.report(lambda since: True)  # answered once
    assert not paths.applied_faults.exists()


def test_effects_that_do_not_settle_are_reported_as_still_settling(tmp_path, monkeypatch):
    monkeypatch.setattr(controller, "SETTLE_TIMEOUT", 0.0)
    faults, paths = manager(tmp_path, {})
    faults.reconcile()
    faults.report(lambda since: False)
    assert json.loads(paths.applied_faults.read_text())["settled"] is False



def test_a_change_written_within_the_same_tick_of_the_file_clock_is_seen(tmp_path):
    """Two writes whose mtime is the same (the kernel's file clock is coarse) are two changes: the
    second would otherwise never be applied and `lab break` would wait out its timeout."""
    faults, paths = manager(tmp_path, {})
    faults.reconcile()
    faults.report(lambda since: True)
    first = paths.faults.stat().st_mtime_ns
    write_json_atomically(paths.faults, {})
    os.utime(paths.faults, ns=(first, first))
    faults.reconcile()
    faults.report(lambda since: True)
    assert json.loads(paths.applied_faults.read_text())["generation"] == generation(paths.faults)


def test_a_fault_that_fails_unexpectedly_is_answered_at_once(tmp_path, monkeypatch):
    """A fault whose code raises what the lab did not expect is an error `lab break` prints now
    (not the user's: exit 5), not a change the daemon never answers."""
    def broken(cluster, target):
        raise RuntimeError("no such table")

    monkeypatch.setitem(controller.CATALOG, "broken", Fault("broken", "node", "breaks", "node-1", broken, broken))
    faults, paths = manager(tmp_path, {"broken": "node-1"})
    faults.reconcile()
    answer = json.loads(paths.applied_faults.read_text())
    assert answer["generation"] == generation(paths.faults) and answer["active"] == {}
    assert answer["errors"] == {"broken": {"message": "the lab daemon failed: RuntimeError: no such table",
                                           "usage": False}}
