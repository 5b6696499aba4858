"""Time-to-verdict of `netdoctor check svc/api -n shop` on a lab, split by phase, with packet
capture off and on (`--capture auto`): the difference is what the hop-by-hop verdict adds.

Builds a lab per CNI dialect (--dialects: flannel-vxlan by default, `all` for the five the lab
speaks), times the healthy shop and one failing fault (kube-proxy-stale by default: under Cilium its
socket-level translation goes stale), and prints connect+resolve, probe start, capture (starting
and stopping tcpdump, decoding), probing and judging, then what capture adds: the total with
capture on minus the total with it off, interleaved run by run, side by side. Needs root (hold
/tmp/netdoctor-lab.lock). Targets: healthy under 5 s; a failing layer under its timeout (3 s) + 2 s;
capture adds at most 0.5 s (issue 13).
Usage: python benchmarks/check_time.py [--fault NAME] [--runs N] [--dialects all|D1,D2]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from contextlib import nullcontext

from netdoctor import catalog
from netdoctor.check import plan
from netdoctor.check import resolve
from netdoctor.probe import runner
from netdoctor.judge import coverage, paths
from netdoctor.judge.verdict import judge
from netdoctor.cluster.kube import Kube
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig
from netdoctor.model import CaptureMode, Evidence
from netdoctor.probe.decoding import DecoderProcess
from netdoctor.check.target import parse_target

PHASES = ("connect+resolve", "probe start", "capture", "probing", "judging", "total")
DIALECTS = {"flannel-vxlan": ("flannel", "vxlan"), "flannel-routed": ("flannel", "routed"),
            "calico-vxlan": ("calico", "vxlan"), "calico-routed": ("calico", "routed"),
            "cilium-vxlan": ("cilium", "vxlan")}


def one_check(kubeconfig: str, capture: CaptureMode) -> dict[str, float]:
    """As `check` does: the decoder process (capture on) started before connecting, both questions."""
    t0 = time.monotonic()
    with DecoderProcess() if capture is not CaptureMode.OFF else nullcontext() as decoding:
        kube = Kube.connect(kubeconfig)
        facts = resolve.resolve(kube, resolve.Request(parse_target("svc/api"), "shop", None, None))
        the_plan = plan.build(facts, plan.Options(capture=capture))
        t1 = time.monotonic()
        result = runner.run(kube, the_plan, facts, runner.RunOptions(), uncovered=coverage.uncovered,
                            unsettled=paths.unsettled, decoding=decoding)
    t2 = time.monotonic()
    evidence = Evidence(facts, the_plan, result.observations, result.captures, result.probes)
    report = judge(evidence, catalog.load(), t2 - t0)
    t3 = time.monotonic()
    assert report is not None
    return dict(zip(PHASES, (t1 - t0, result.launch_seconds, result.capture_seconds, result.probe_seconds,
                             t3 - t2, t3 - t0)))


def show(label: str, samples: list[dict[str, float]]) -> float:
    """Print the medians of each phase; return the median total."""
    cells = "  ".join(f"{p} {statistics.median(s[p] for s in samples):.2f}s" for p in PHASES)
    print(f"{label:<50} {cells}")
    return statistics.median(s["total"] for s in samples)


def compare(label: str, kubeconfig: str, runs: int) -> None:
    """Capture off and on, interleaved run by run, then what capture adds."""
    samples: dict[CaptureMode, list[dict[str, float]]] = {CaptureMode.OFF: [], CaptureMode.AUTO: []}
    for _ in range(runs):
        for mode, found in samples.items():
            found.append(one_check(kubeconfig, mode))
    off, on = (show(f"{label}, capture {mode.value}", found) for mode, found in samples.items())
    print(f"{label + ', capture adds':<50} {on - off:+.2f}s (target ≤ 0.5 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", default="kube-proxy-stale")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dialects", default="flannel-vxlan", help="all, or a comma-separated list of " +
                        ", ".join(DIALECTS))
    args = parser.parse_args()
    chosen = list(DIALECTS) if args.dialects == "all" else args.dialects.split(",")
    if set(chosen) - set(DIALECTS):
        parser.error(f"unknown dialect(s): {', '.join(sorted(set(chosen) - set(DIALECTS)))}")
    for dialect in chosen:
        per_dialect(dialect, args.fault, args.runs)
    print("(medians; the CLI adds ~0.3 s of Python start-up and ~0.4 s of kubernetes import on top)")


def per_dialect(dialect: str, fault: str, runs: int) -> None:
    cni, overlay = DIALECTS[dialect]
    name = "c" + secrets.token_hex(3)
    result = lifecycle.up(LabConfig(name, cni=cni, overlay=overlay).validate())
    try:
        kubeconfig = str(result.kubeconfig)
        one_check(kubeconfig, CaptureMode.AUTO)  # warm-up: imports, TLS session
        compare(f"{dialect}: healthy", kubeconfig, runs)
        lifecycle.break_fault(name, fault, None)
        time.sleep(1)
        compare(f"{dialect}: {fault}", kubeconfig, runs)
    finally:
        lifecycle.down(name)


if __name__ == "__main__":
    main()
