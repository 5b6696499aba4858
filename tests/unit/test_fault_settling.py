"""The lab daemon's answer to `lab break`/`lab fix` (netdoctor.lab.controller.FaultManager): written
once the change's effects settled, or after SETTLE_TIMEOUT as still settling."""

from __future__ import annotations

import json
from types import SimpleNamespace

from netdoctor.lab import controller
from netdoctor.lab.controller import FaultManager


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
    assert answer["settled"] is True and answer["generation"] == paths.faults.stat().st_mtime_ns
    paths.applied_faults.unlink()
    faults.report(lambda since: True)  # answered once
    assert not paths.applied_faults.exists()


def test_effects_that_do_not_settle_are_reported_as_still_settling(tmp_path, monkeypatch):
    monkeypatch.setattr(controller, "SETTLE_TIMEOUT", 0.0)
    faults, paths = manager(tmp_path, {})
    faults.reconcile()
    faults.report(lambda since: False)
    assert json.loads(paths.applied_faults.read_text())["settled"] is False

