"""Time-to-verdict of `netdoctor check svc/api -n shop` on a lab, split by phase.

Builds a lab, times the healthy shop and one failing fault (kube-proxy-stale by default), and
prints connect+resolve, probe start, probing and judging. Needs root. Targets: healthy under 5 s;
a failing layer under its timeout (3 s) + 2 s.
Usage: python benchmarks/check_time.py [--fault NAME] [--runs N]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from netdoctor import catalog, plan, resolve, runner
from netdoctor.judge import judge
from netdoctor.kube import Kube
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig
from netdoctor.model import Evidence
from netdoctor.target import parse_target

PHASES = ("connect+resolve", "probe start", "probing", "judging", "total")


def one_check(kubeconfig: str) -> dict[str, float]:
    t0 = time.monotonic()
    kube = Kube.connect(kubeconfig)
    facts = resolve.resolve(kube, resolve.Request(parse_target("svc/api"), "shop", None, None))
    the_plan = plan.build(facts)
    t1 = time.monotonic()
    result = runner.run(kube, the_plan, facts, runner.RunOptions())
    t2 = time.monotonic()
    report = judge(Evidence(facts, the_plan, result.observations), catalog.load(), t2 - t0)
    t3 = time.monotonic()
    assert report is not None
    return dict(zip(PHASES, (t1 - t0, result.launch_seconds, result.probe_seconds, t3 - t2, t3 - t0)))


def show(label: str, samples: list[dict[str, float]]) -> None:
    cells = "  ".join(f"{p} {statistics.median(s[p] for s in samples):.2f}s" for p in PHASES)
    print(f"{label:<22} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", default="kube-proxy-stale")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    name = "c" + secrets.token_hex(3)
    result = lifecycle.up(LabConfig(name))
    try:
        kubeconfig = str(result.kubeconfig)
        one_check(kubeconfig)  # warm-up: imports, TLS session
        show("healthy shop", [one_check(kubeconfig) for _ in range(args.runs)])
        lifecycle.break_fault(name, args.fault, None)
        time.sleep(1)
        show(f"fault {args.fault}", [one_check(kubeconfig) for _ in range(args.runs)])
    finally:
        lifecycle.down(name)
    print("(medians; the CLI adds ~0.3 s of Python start-up and ~0.4 s of kubernetes import on top)")


if __name__ == "__main__":
    main()
