"""Side by side, same lab, same run: `netdoctor check svc/api -n shop` (the full check, capture on
and off) against the minimal runbook a person would script with the official Kubernetes client:
read the Service and its pods, create a netshoot pod (labelled as a client the NetworkPolicies
admit, as netdoctor's probes impersonate one), wait until it runs, exec nslookup of the
Service's name and curl to its ClusterIP and to each pod IP (its targetPort), delete the pod.

Each is a fresh process (Python start-up and imports count for both), interleaved so the machine's
load hits all alike; medians of N runs and the ratio netdoctor / runbook are printed, and the
median of each round's own ratio (this machine's speed drifts by a third within minutes). netdoctor's
modules are byte-compiled first, as pip does when it installs them (the official client's are): in
a checkout with PYTHONDONTWRITEBYTECODE set, every run would compile them again. Target
(issue 13): on the lab the full check with capture is no slower than the runbook (ratio ≤ 1).
Builds a lab (needs root; hold /tmp/netdoctor-lab.lock). The runbook alone, against any cluster:
`python benchmarks/runbook.py --runbook KUBECONFIG [--namespace NS] [--service NAME]`.
Usage: python benchmarks/runbook.py [--runs N]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "nicolaka/netshoot:v0.13"


def runbook(kubeconfig: str, namespace: str, service: str, labels: dict[str, str]) -> None:
    """The minimal runbook with the official client; raises if a step fails."""
    from kubernetes import client, config, watch
    from kubernetes.stream import stream

    config.load_kube_config(kubeconfig)
    core = client.CoreV1Api()
    svc = core.read_namespaced_service(service, namespace)
    selector = ",".join(f"{k}={v}" for k, v in (svc.spec.selector or {}).items())
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    port = svc.spec.ports[0]
    name = f"runbook-{secrets.token_hex(3)}"
    body = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(restart_policy="Never", termination_grace_period_seconds=0,
                              containers=[client.V1Container(name="shell", image=IMAGE, command=["sleep", "300"])]))
    core.create_namespaced_pod(namespace, body)
    try:
        events = watch.Watch()
        for event in events.stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                                   timeout_seconds=60):
            if event["object"].status.phase == "Running":
                events.stop()
        urls = [f"http://{svc.spec.cluster_ip}:{port.port}/",
                *(f"http://{p.status.pod_ip}:{_target_port(p, port.target_port)}/" for p in pods if p.status.pod_ip)]
        script = f"nslookup {service}.{namespace}.svc.cluster.local >/dev/null && echo dns-ok; " + "; ".join(
            f"curl -s -o /dev/null -m 3 -w 'http=%{{http_code}} {url}\\n' {url}" for url in urls)
        out = stream(core.connect_get_namespaced_pod_exec, name, namespace, command=["sh", "-c", script],
                     stderr=True, stdout=True, stdin=False, tty=False)
        if "dns-ok" not in out or out.count("http=200 ") != len(urls):
            raise RuntimeError(f"runbook output: {out!r}")
    finally:
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


def _target_port(pod, target) -> int:
    """The Service's targetPort on this pod: a number, or the container port of that name."""
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    return next(p.container_port for c in pod.spec.containers for p in c.ports or () if p.name == target)


def timed(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - began


def side_by_side(kubeconfig: str, runs: int) -> None:
    compileall.compile_dir(ROOT / "netdoctor", quiet=1)
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(ROOT)}
    check = [sys.executable, "-m", "netdoctor", "check", "svc/api", "-n", "shop"]
    commands = {
        "runbook (official client)": [sys.executable, __file__, "--runbook", kubeconfig],
        "netdoctor check, capture on": check,
        "netdoctor check, capture off": [*check, "--capture", "off"],
    }
    for argv in commands.values():  # warm-up: page cache, the lab's first exec
        timed(argv, env)
    samples: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, argv in commands.items():
            samples[label].append(timed(argv, env))
    runbook_times = samples["runbook (official client)"]
    base = statistics.median(runbook_times)
    for label, times in samples.items():
        median = statistics.median(times)
        rounds = sorted(t / r for t, r in zip(times, runbook_times))
        spread = f"{rounds[len(rounds) // 4]:4.2f}–{rounds[(3 * len(rounds)) // 4]:4.2f}"
        print(f"{label:<30} {median:5.2f} s   ratio to the runbook {median / base:4.2f}   "
              f"round by round {statistics.median(rounds):4.2f} ({spread})")
    print(f"(medians of {runs} runs each, interleaved; each a fresh process; round by round: the median of each round's "
          f"ratio to the runbook run just before it, and the middle half of them: the machine's drift cancels out; "
          f"target: capture on, ratio ≤ 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runbook", metavar="KUBECONFIG", help="only run the runbook against this cluster")
    parser.add_argument("--namespace", default="shop")
    parser.add_argument("--service", default="api")
    parser.add_argument("--labels", default="app=frontend,tier=web",
                        help="the runbook pod's labels: a client the NetworkPolicies admit (the shop's frontend)")
    args = parser.parse_args()
    if args.runbook:
        runbook(args.runbook, args.namespace, args.service, dict(kv.split("=", 1) for kv in args.labels.split(",")))
        return
    sys.path.insert(0, str(ROOT))
    from netdoctor.lab import lifecycle
    from netdoctor.lab.state import LabConfig

    name = "r" + secrets.token_hex(3)
    result = lifecycle.up(LabConfig(name))
    try:
        side_by_side(str(result.kubeconfig), args.runs)
    finally:
        lifecycle.down(name)


if __name__ == "__main__":
    main()
