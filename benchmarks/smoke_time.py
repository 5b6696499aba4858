"""Time of `netdoctor smoke -f examples/shop-smoke.yaml` on a lab against the same expectations run
one by one (each a run of its own, with its own probes, as separate `check`s would), and the ratio;
then a file of 20 expected denials, whose connections must all end within one probe timeout
(--timeout, 3 s) plus a few seconds.

Builds a lab (the shop), prints for each: total, probe start (creating and awaiting the probe pods),
probing (every step, in one round) and the pods created. Needs root; run it under the lab lock.
Usage: python benchmarks/smoke_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

from netdoctor import catalog
from netdoctor.check import plan, smoke
from netdoctor.check.smoke_command import judge_units
from netdoctor.cluster.kube import Kube
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig
from netdoctor.model import CaptureMode, State
from netdoctor.probe import runner

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shop-smoke.yaml"
TIMEOUT = 3.0
SOURCES = ({"workload": "ops/deploy/toolbox"}, {"namespace": "ops"}, {"namespace": "shop"}, {"selector": "app=db"},
           {"workload": "deploy/frontend"})
DENIED = {  # destination -> the sources the shop's policies keep out
    ("service", "api"): (0, 1, 2, 3), ("workload", "deploy/api"): (0, 1, 2, 3), ("service", "db"): (0, 1, 2, 3, 4),
    ("workload", "deploy/db"): (0, 1, 2, 3, 4), ("selector", "app=api"): (0, 1, 2, 3),
}
PORTS = {"api": "TCP/8080", "db": "TCP/5432"}


def denials_file(directory: Path) -> Path:
    flows = []
    for (kind, name), sources in DENIED.items():
        port = "http" if kind == "service" and name == "api" else PORTS["api" if "api" in name else "db"]
        flows += [{"from": SOURCES[i], "to": {kind: name}, "port": port, "expect": "deny"} for i in sources]
    path = directory / "denials.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "netdoctor.io/v1", "kind": "Smoke", "namespace": "shop",
                                    "flows": flows[:20]}))
    assert len(flows[:20]) == 20
    return path


def one_run(kube: Kube, smoke_file: smoke.SmokeFile) -> dict[str, float]:
    started = time.monotonic()
    units = smoke.build(kube, smoke_file, plan.Options(capture=CaptureMode.AUTO))
    results = runner.run_many(kube, tuple(runner.Job(u.plan, u.facts) for u in units),
                              runner.RunOptions(timeout=TIMEOUT, workers=48))
    judged = judge_units(units, results, catalog.load(), started)
    failed = [r for r in judged if r.state not in (State.PASS, State.WARN)]
    assert not failed, [(r.expectation.title, r.message) for r in failed]
    return {"total": time.monotonic() - started, "probe start": results[0].launch_seconds,
            "probing": results[0].probe_seconds, "pods": results[0].pods_created}


def one_by_one(kube: Kube, smoke_file: smoke.SmokeFile) -> dict[str, float]:
    """Each expectation in a run of its own."""
    runs = [one_run(kube, replace(smoke_file, items=(item,))) for item in smoke_file.items]
    return {key: sum(r[key] for r in runs) for key in runs[0]}


def show(label: str, samples: list[dict[str, float]]) -> dict[str, float]:
    median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    print(f"{label:<44} total {median['total']:6.2f}s  probe start {median['probe start']:6.2f}s  "
          f"probing {median['probing']:5.2f}s  pods {median['pods']:.0f}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = "s" + secrets.token_hex(3)
    result = lifecycle.up(LabConfig(name))
    try:
        kube = Kube.connect(str(result.kubeconfig))
        example = smoke.load(EXAMPLE)
        print(f"{EXAMPLE.name}: {len(example.items)} expectations, timeout {TIMEOUT:g} s, median of {args.runs}")
        together = show("one smoke run", [one_run(kube, example) for _ in range(args.runs)])
        apart = show("the same, one run per expectation", [one_by_one(kube, example) for _ in range(args.runs)])
        print(f"ratio (one by one / together): {apart['total'] / together['total']:.1f}x")
        with tempfile.TemporaryDirectory() as directory:
            denials = smoke.load(denials_file(Path(directory)))
            twenty = show("20 expected denials", [one_run(kube, denials) for _ in range(args.runs)])
        print(f"20 denials: probing {twenty['probing']:.2f}s = timeout {TIMEOUT:g}s + "
              f"{twenty['probing'] - TIMEOUT:.2f}s (target: + a few seconds)")
    finally:
        lifecycle.down(name)


if __name__ == "__main__":
    main()
