"""Time-to-verdict of `netdoctor check svc/api -n shop` on a lab, split by phase, with packet
capture off and on (`--capture auto`): the difference is what the hop-by-hop verdict adds.

Builds a lab, times the healthy shop and one failing fault (kube-proxy-stale by default), and
prints connect+resolve, probe start, capture (starting and stopping tcpdump, decoding), probing
and judging. Needs root. Targets: healthy under 5 s; a failing layer under its timeout (3 s) + 2 s;
captures add under 2 s.
Usage: python benchmarks/check_time.py [--fault NAME] [--runs N]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from netdoctor import catalog
from netdoctor.check import plan
from netdoctor.check import resolve
from netdoctor.probe import runner
from netdoctor.judge import coverage
from netdoctor.judge.verdict import judge
from netdoctor.cluster.kube import Kube
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig
from netdoctor.model import CaptureMode, Evidence
from netdoctor.check.target import parse_target

PHASES = ("connect+resolve", "probe start", "capture", "probing", "judging", "total")


def one_check(kubeconfig: str, capture: CaptureMode) -> dict[str, float]:
    t0 = time.monotonic()
    kube = Kube.connect(kubeconfig)
    facts = resolve.resolve(kube, resolve.Request(parse_target("svc/api"), "shop", None, None))
    the_plan = plan.build(facts, plan.Options(capture=capture))
    t1 = time.monotonic()
    result = runner.run(kube, the_plan, facts, runner.RunOptions(), uncovered=coverage.uncovered)  # as `check` does
    t2 = time.monotonic()
    evidence = Evidence(facts, the_plan, result.observations, result.captures, result.probes)
    report = judge(evidence, catalog.load(), t2 - t0)
    t3 = time.monotonic()
    assert report is not None
    return dict(zip(PHASES, (t1 - t0, result.launch_seconds, result.capture_seconds, result.probe_seconds,
                             t3 - t2, t3 - t0)))


def show(label: str, samples: list[dict[str, float]]) -> None:
    cells = "  ".join(f"{p} {statistics.median(s[p] for s in samples):.2f}s" for p in PHASES)
    print(f"{label:<34} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", default="kube-proxy-stale")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = "c" + secrets.token_hex(3)
    result = lifecycle.up(LabConfig(name))
    try:
        kubeconfig = str(result.kubeconfig)
        one_check(kubeconfig, CaptureMode.AUTO)  # warm-up: imports, TLS session
        for mode in (CaptureMode.OFF, CaptureMode.AUTO):
            show(f"healthy, capture {mode.value}", [one_check(kubeconfig, mode) for _ in range(args.runs)])
        lifecycle.break_fault(name, args.fault, None)
        time.sleep(1)
        for mode in (CaptureMode.OFF, CaptureMode.AUTO):
            show(f"{args.fault}, capture {mode.value}", [one_check(kubeconfig, mode) for _ in range(args.runs)])
    finally:
        lifecycle.down(name)
    print("(medians; the CLI adds ~0.3 s of Python start-up and ~0.4 s of kubernetes import on top)")


if __name__ == "__main__":
    main()
