"""What `netdoctor check svc/api -n shop` plans and reads as the cluster grows: lab clusters of 2
and 8 nodes, and 2-node labs with 1,000 and 5,000 ghost nodes, 20,000 ghost pods and 2,000 ghost
policies (`lab up --ghost-…`: API objects without a data plane).

For each: the probes and steps planned (default sample, capture on), the bytes read from the API
and the requests made by resolve, and resolve+plan time (median of --runs); for contrast, the same
with `--nodes all`. Then the full check (capture on) on the 2- and 8-node labs, median of --runs,
and the ratio; and how fast the API server lists with 50,000 objects (every pod, page by page).
Targets (issue 13): probes ≤ 8 and steps ≤ 150 at every size; resolve+plan ≤ 1 s at 5,000 nodes;
bytes read grow with the namespaces involved, not with the cluster; the 8-node check within 20 %
of the 2-node one. Needs root and the lab lock:
    flock /tmp/netdoctor-lab.lock python3 benchmarks/scale.py [--runs 3] [--no-check]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from netdoctor import catalog
from netdoctor.check import plan, resolve
from netdoctor.check.nodes import NodeChoice
from netdoctor.check.target import parse_target
from netdoctor.cluster.kube import Kube
from netdoctor.judge import coverage, paths
from netdoctor.judge.verdict import judge
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig
from netdoctor.model import CaptureMode, Evidence
from netdoctor.probe import runner
from netdoctor.probe.decoding import DecoderProcess

GHOSTS = dict(ghost_pods=20_000, ghost_policies=2_000)
CLUSTERS = (
    ("2 nodes", dict(nodes=2)),
    ("8 nodes", dict(nodes=8)),
    ("1,000 nodes (ghost)", dict(nodes=2, ghost_nodes=1_000, **GHOSTS)),
    ("5,000 nodes (ghost)", dict(nodes=2, ghost_nodes=5_000, **GHOSTS)),
)


def request(choice: NodeChoice) -> resolve.Request:
    return resolve.Request(parse_target("svc/api"), "shop", None, None, choice)


def resolve_and_plan(kubeconfig: str, choice: NodeChoice) -> tuple[plan.Plan, int, int, float]:
    """The plan, bytes read, requests made, and seconds for resolve+plan (connected beforehand)."""
    kube = Kube.connect(kubeconfig)
    started = time.monotonic()
    facts = resolve.resolve(kube, request(choice))
    the_plan = plan.build(facts, plan.Options(nodes=choice, capture=CaptureMode.AUTO))
    return the_plan, kube.bytes_read, kube.requests, time.monotonic() - started


def one_check(kubeconfig: str) -> float:
    """The whole check as `netdoctor check svc/api -n shop` runs it (capture on: its decoder process
    started first; both of the judge's questions), in seconds."""
    started = time.monotonic()
    with DecoderProcess() as decoding:
        kube = Kube.connect(kubeconfig)
        facts = resolve.resolve(kube, request(NodeChoice()))
        the_plan = plan.build(facts, plan.Options(capture=CaptureMode.AUTO))
        result = runner.run(kube, the_plan, facts, runner.RunOptions(), uncovered=coverage.uncovered,
                            unsettled=paths.unsettled, decoding=decoding)
    judge(Evidence(facts, the_plan, result.observations, result.captures, result.probes), catalog.load(),
          time.monotonic() - started)
    return time.monotonic() - started


def list_everything(kubeconfig: str) -> str:
    kube = Kube.connect(kubeconfig)
    started = time.monotonic()
    pods = kube.list_metadata("Pod")
    metadata = time.monotonic() - started
    started = time.monotonic()
    full = kube.list_objects("Pod")
    return (f"  API server, {len(pods):,} pods listed page by page: metadata only {metadata:.2f} s, "
            f"full objects {time.monotonic() - started:.2f} s ({len(full):,})")


def measure(label: str, config: dict, runs: int, check: bool) -> float | None:
    name = "s" + secrets.token_hex(3)
    result = lifecycle.up(LabConfig(name, **config).validate())
    try:
        kubeconfig = str(result.kubeconfig)
        resolve_and_plan(kubeconfig, NodeChoice())  # warm-up: imports, TLS session
        samples = [resolve_and_plan(kubeconfig, NodeChoice()) for _ in range(runs)]
        the_plan, read, calls, _ = samples[0]
        seconds = statistics.median(s[3] for s in samples)
        every, every_read, _, every_seconds = resolve_and_plan(kubeconfig, NodeChoice(all=True))
        print(f"{label:<22} probes {len(the_plan.probes):>2}  steps {len(the_plan.steps):>3}  "
              f"read {read / 1024:>7.1f} KiB in {calls:>2} requests  resolve+plan {seconds:.3f} s   "
              f"| --nodes all: probes {len(every.probes)}, steps {len(every.steps)}, "
              f"read {every_read / 1024:,.0f} KiB, {every_seconds:.2f} s")
        print("  sample: " + "; ".join(f"{n.name} ({', '.join(w.reason.value for w in n.why)})"
                                       for n in the_plan.sample))
        if config.get("ghost_nodes"):
            print(list_everything(kubeconfig))
        if not check:
            return None
        one_check(kubeconfig)  # warm-up: the probe image's first start
        checks = [one_check(kubeconfig) for _ in range(runs)]
        print(f"  check (capture on): median {statistics.median(checks):.2f} s of {', '.join(f'{c:.2f}' for c in checks)}")
        return statistics.median(checks)
    finally:
        lifecycle.down(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="plan and reads only, no full check")
    args = parser.parse_args()
    times = {label: measure(label, config, args.runs, not args.no_check and not config.get("ghost_nodes"))
             for label, config in CLUSTERS}
    if not args.no_check:
        two, eight = times["2 nodes"], times["8 nodes"]
        print(f"check on 8 nodes / on 2 nodes: {eight / two:.2f}× ({eight:.2f} s / {two:.2f} s; target ≤ 1.20×)")


if __name__ == "__main__":
    main()
