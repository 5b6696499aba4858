"""Times `netdoctor policy matrix` on synthetic worlds: 100, 300, 1,000 and 5,000 pods, 5 ports each,
and the whole command over a 50 MB manifest file.

Run: `python benchmarks/policy_matrix.py [PODS ...]`. The world is deterministic (seeded): pods
come from workloads with replicas in several namespaces, with one policy for every five pods
(default-deny, app-to-app on named and numbered ports, namespaceSelector, endPort ranges,
matchExpressions, ipBlock egress). Targets (2-core machine): 1,000 pods × 200 policies × 5 ports
under 5 s, 5,000 pods × 1,000 policies × 5 ports under 5 s, and `netdoctor policy matrix -f` over
a 50 MB `kubectl get -o yaml`-like file (those 5,000 pods with their managedFields, annotations
and status, the policies and namespaces) under 10 s, end to end as a fresh process. A line shows
the worst case, where no two pods can be grouped. Prints the figures; asserts nothing.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netdoctor.policy.matrix import compute_matrix, parse_port
from netdoctor.policy.model import world_from_objects

PORTS = ("TCP/80", "TCP/443", "TCP/9090", "UDP/53", "TCP/http")
PORT_POOL = (("http", 80, "TCP"), ("https", 443, "TCP"), ("grpc", 9090, "TCP"), ("metrics", 9100, "TCP"), ("dns", 53, "UDP"))
TEAMS = ("payments", "search", "identity", "platform")
TIERS = ("frontend", "backend", "data")


def synthetic_objects(pods: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    namespaces = [f"ns{i}" for i in range(max(4, pods // 50))]
    objects: list[dict] = [
        {"kind": "Namespace", "metadata": {"name": ns, "labels": {"team": rng.choice(TEAMS), "env": rng.choice(("prod", "dev"))}}}
        for ns in namespaces
    ]
    apps: list[tuple[str, str]] = []
    while len(objects) - len(namespaces) < pods:
        ns, app = rng.choice(namespaces), f"app{len(apps)}"
        apps.append((ns, app))
        labels = {"app": app, "tier": rng.choice(TIERS), "version": rng.choice(("v1", "v2"))}
        ports = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in rng.sample(PORT_POOL, rng.randint(1, 2))]
        for replica in range(min(rng.randint(1, 8), pods - (len(objects) - len(namespaces)))):
            ip = len(objects)
            objects.append(
                {
                    "kind": "Pod",
                    "metadata": {"name": f"{app}-{replica}", "namespace": ns, "labels": labels},
                    "spec": {"containers": [{"name": "main", "ports": ports}]},
                    "status": {"podIP": f"10.{ip // 65536}.{ip // 256 % 256}.{ip % 256}"},
                }
            )
    objects.extend(_policy(rng, i, namespaces, apps) for i in range(max(1, pods // 5)))
    return objects


def _policy(rng: random.Random, i: int, namespaces: list[str], apps: list[tuple[str, str]]) -> dict:
    ns, app = rng.choice(apps)
    other_ns, other_app = rng.choice(apps)
    kind = i % 6
    spec: dict = {"podSelector": {"matchLabels": {"app": app}}}
    if kind == 0:
        spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
    elif kind == 1:
        spec["ingress"] = [{"from": [{"podSelector": {"matchLabels": {"app": other_app}}}], "ports": [{"port": "http"}]}]
    elif kind == 2:
        spec["ingress"] = [{"from": [{"namespaceSelector": {"matchLabels": {"team": rng.choice(TEAMS)}}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "backend"]}]}}], "ports": [{"port": 9000, "endPort": 9100}]}]
    elif kind == 3:
        spec["policyTypes"] = ["Egress"]
        spec["egress"] = [
            {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other_ns}}}], "ports": [{"port": 53, "protocol": "UDP"}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]},
        ]
    elif kind == 4:
        spec["ingress"] = [{"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 443}]}]
    else:
        spec["podSelector"] = {"matchExpressions": [{"key": "version", "operator": "NotIn", "values": ["v1"]}]}
        spec["egress"] = [{"to": [{"podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}]}]
    return {"kind": "NetworkPolicy", "metadata": {"name": f"policy{i}", "namespace": ns}, "spec": spec}


def run(pods: int, distinct: bool = False) -> None:
    """One line of figures; `distinct` gives every pod its own `app` label: no two pods group."""
    objects = synthetic_objects(pods)
    for obj in objects if distinct else ():
        if obj["kind"] == "Pod":
            obj["metadata"]["labels"] = {**obj["metadata"]["labels"], "app": obj["metadata"]["name"]}
    world = world_from_objects(objects)
    ports = [parse_port(p) for p in PORTS]
    started = time.perf_counter()
    matrix = compute_matrix(world, ports=ports)
    computed = time.perf_counter() - started
    allowed, cells = matrix.totals()
    counted = time.perf_counter() - started
    print(
        f"{len(world.pods):>5} pods {len(world.policies):>4} policies {len(set(matrix.groups)):>4} groups "
        f"{len(world.pods) ** 2 * len(PORTS):>9,} pods²×ports {cells:>9,} cells ({allowed:,} allowed): "
        f"matrix {computed:.3f} s, with totals {counted:.3f} s{' (worst case: no grouping)' if distinct else ''}"
    )


# What `kubectl get -o yaml` adds to a pod the policies never read; about 9 kB a pod.
_FIELDS = "".join(f"""          f:field{i}:
            .: {{}}
            k:{{"name":"container{i}"}}:
              f:image: {{}}
              f:ports: {{}}
""" for i in range(40))
_EXTRA = f"""    annotations:
      kubectl.kubernetes.io/last-applied-configuration: '{"x" * 3600}'
    creationTimestamp: "2026-01-01T00:00:00Z"
    resourceVersion: "123456"
    uid: 0d5c4b5e-0000-4000-8000-000000000000
    managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      manager: kube-controller-manager
      operation: Update
      time: "2026-01-01T00:00:00Z"
      fieldsV1:
        f:spec:
{_FIELDS}"""
_STATUS = """    phase: Running
    conditions:
    - {type: Initialized, status: "True", lastTransitionTime: "2026-01-01T00:00:00Z"}
    - {type: Ready, status: "True", lastTransitionTime: "2026-01-01T00:00:00Z"}
    - {type: ContainersReady, status: "True", lastTransitionTime: "2026-01-01T00:00:00Z"}
    - {type: PodScheduled, status: "True", lastTransitionTime: "2026-01-01T00:00:00Z"}
    hostIP: 172.18.0.2
    startTime: "2026-01-01T00:00:00Z"
"""


def write_manifest(path: Path, pods: int) -> int:
    """A `kind: List` YAML file of the synthetic world, its pods as the API serves them; its size."""
    with path.open("w") as out:
        out.write("apiVersion: v1\nkind: List\nitems:\n")
        for obj in synthetic_objects(pods):
            if obj["kind"] != "Pod":
                out.write(f"- {json.dumps(obj)}\n")  # JSON is YAML: namespaces and policies in flow style
                continue
            meta, spec = obj["metadata"], obj["spec"]
            labels = "".join(f"      {k}: {v}\n" for k, v in meta["labels"].items())
            ports = "".join(f"      - {{name: {p['name']}, containerPort: {p['containerPort']}, protocol: {p['protocol']}}}\n"
                            for p in spec["containers"][0]["ports"])
            out.write(f"- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: {meta['name']}\n"
                      f"    namespace: {meta['namespace']}\n    labels:\n{labels}{_EXTRA}"
                      f"  spec:\n    containers:\n    - name: main\n      image: nginx:1.27\n      ports:\n{ports}"
                      f"  status:\n    podIP: {obj['status']['podIP']}\n{_STATUS}")
    return path.stat().st_size


def run_file(pods: int = 5000) -> None:
    """`netdoctor policy matrix -f FILE -n ns0`, a fresh process, over the world as one big file."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.yaml"
        size = write_manifest(path, pods)
        began = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "netdoctor", "policy", "matrix", "-f", str(path), "-n", "ns0"],
                              cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True)
        took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"policy matrix failed: {done.stderr.strip()}")
    print(f"netdoctor policy matrix -f ({size / 1e6:.0f} MB, {pods} pods, {pods // 5} policies) -n ns0: {took:.2f} s "
          f"end to end (target 10 s)")


def main(argv: list[str]) -> None:
    for pods in [int(a) for a in argv] or [100, 300, 1000, 5000]:
        run(pods)
    if not argv:
        run(1000, distinct=True)
        run_file()


if __name__ == "__main__":
    main(sys.argv[1:])
