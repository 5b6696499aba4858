"""What `netdoctor check svc/api -n shop` plans and reads as the cluster grows: lab clusters of 2
and 8 nodes, and 2-node labs with 1,000 and 5,000 ghost nodes, 20,000 ghost pods and 2,000 ghost
policies (`lab up --ghost-…`: API objects without a data plane).

For each: the probes and steps planned (default sample, capture on), the bytes read from the API
and the requests made by resolve, and resolve+plan time (median of --runs); for contrast, the same
with `--nodes all`. Then the full check (capture on) on the 2- and 8-node labs, up together and
checked in turn (run i on one, then run i on the other), median of --runs, and the ratio: as a
user runs it (a fresh `netdoctor check` process; the target) and in-process (imports warm: what
the probes, steps and captures alone cost, which grows with the nodes the sample takes); and how
fast the API server lists with 50,000 objects (every pod, page by page).
Targets (issue 13): probes ≤ 8 and steps ≤ 150 at every size; resolve+plan ≤ 1 s at 5,000 nodes;
bytes read grow with the namespaces involved, not with the cluster; the 8-node check (as a user
runs it) within 20 % of the 2-node one. Needs root and the lab lock:
    flock /tmp/netdoctor-lab.lock python3 benchmarks/scale.py [--runs 3] [--no-check]
"""

from __future__ import annotations

import argparse
import compileall
import os
import secrets
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

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

ROOT = Path(__file__).resolve().parent.parent
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


@contextmanager
def lab(config: dict):
    """A lab built from `config`, its kubeconfig path; torn down on leaving."""
    name = "s" + secrets.token_hex(3)
    result = lifecycle.up(LabConfig(name, **config).validate())
    try:
        yield str(result.kubeconfig)
    finally:
        lifecycle.down(name)


def describe(label: str, config: dict, kubeconfig: str, runs: int) -> None:
    """The plan, reads and resolve+plan time with the default sample and with `--nodes all`."""
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


def cli_check(kubeconfig: str) -> float:
    """`netdoctor check svc/api -n shop` as a user runs it: a fresh process, in seconds."""
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "netdoctor", "check", "svc/api", "-n", "shop"], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"netdoctor check exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - began


def compare_checks(kubeconfigs: dict[str, str], runs: int) -> dict[str, dict[str, float]]:
    """The full check on each lab, run by `how` ("command": a fresh process as a user runs it;
    "in-process": imports warm, what the check itself costs), interleaved run by run (the
    machine's speed drifts by half within minutes: labs measured one after the other would
    compare two machines); medians by how, then by lab."""
    compileall.compile_dir(ROOT / "netdoctor", quiet=1)  # as pip does on install
    hows = {"command": cli_check, "in-process": one_check}
    for check in hows.values():
        for kubeconfig in kubeconfigs.values():
            check(kubeconfig)  # warm-up: the probe image's first start, the page cache
    times = {how: {label: [] for label in kubeconfigs} for how in hows}
    for _ in range(runs):
        for how, check in hows.items():
            for label, kubeconfig in kubeconfigs.items():
                times[how][label].append(check(kubeconfig))
    for how, by_lab in times.items():
        for label, checks in by_lab.items():
            print(f"  check (capture on), {how}, {label}: median {statistics.median(checks):.2f} s of "
                  f"{', '.join(f'{c:.2f}' for c in checks)}")
    return {how: {label: statistics.median(checks) for label, checks in by_lab.items()}
            for how, by_lab in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="plan and reads only, no full check")
    args = parser.parse_args()
    real = [(label, config) for label, config in CLUSTERS if not config.get("ghost_nodes")]
    with ExitStack() as labs:  # the real-node labs stay up together, for the interleaved checks
        kubeconfigs = {label: labs.enter_context(lab(config)) for label, config in real}
        for label, config in real:
            describe(label, config, kubeconfigs[label], args.runs)
        times = None if args.no_check else compare_checks(kubeconfigs, args.runs)
    for label, config in CLUSTERS:
        if config.get("ghost_nodes"):
            with lab(config) as kubeconfig:
                describe(label, config, kubeconfig, args.runs)
    for how, medians in (times or {}).items():
        two, eight = medians["2 nodes"], medians["8 nodes"]
        target = "; target ≤ 1.20×" if how == "command" else ""
        print(f"check on 8 nodes / on 2 nodes, {how}: {eight / two:.2f}× ({eight:.2f} s / {two:.2f} s{target})")


if __name__ == "__main__":
    main()
