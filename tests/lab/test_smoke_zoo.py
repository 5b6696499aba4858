"""examples/zoo-smoke.yaml on a zoo lab (issue 14, done-when): its Service shapes healthy and
zoo-deny's default-deny with its allow rules holding — every expectation passes."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import start, unique_name

pytestmark = pytest.mark.lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zoo-smoke.yaml"


@pytest.fixture(scope="module")
def zoo():
    running = start(LabConfig(unique_name(), scenario="zoo"))
    yield running
    lifecycle.down(running.name)


def test_the_zoo_smoke_file_passes(zoo):
    out, err = StringIO(), StringIO()
    code = main(["smoke", "-f", str(EXAMPLE), "-o", "json", "--kubeconfig", zoo.kubeconfig],
                Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}))
    doc = json.loads(out.getvalue())
    bad = [(r["where"], r["state"], r["message"], r["diagnosis"]) for r in doc["results"] if r["state"] != "pass"]
    assert code == 0 and not bad, json.dumps(bad, indent=1) + err.getvalue()
    assert len(doc["results"]) >= 12 and sum(r["kind"] == "deny" for r in doc["results"]) >= 5
