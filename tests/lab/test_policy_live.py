"""The policy engine's matrix agrees with live traffic in a lab that enforces NetworkPolicy.

Generated policy sets (seeded, so a failure reproduces) are applied to a small two-namespace
cluster; every pod then connects to every listening pod, and each connection's fate must be the
matrix's verdict. Two independent implementations (the offline engine, the lab's nftables
enforcement) checked against each other with real packets.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client

from netdoctor.cluster.kube import Kube
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig
from netdoctor.policy.matrix import compute_matrix
from netdoctor.policy.model import world_from_objects

from labkit import start, tcp, unique_name

pytestmark = pytest.mark.lab

PODS = [  # namespace, name, labels, listening port (None: a pure client)
    ("alpha", "web", {"app": "web", "tier": "front"}, 8080),
    ("alpha", "api", {"app": "api", "tier": "back"}, 9090),
    ("alpha", "cli", {"role": "client"}, None),
    ("beta", "db", {"app": "db", "tier": "back"}, 5432),
    ("beta", "cli", {"role": "client", "team": "b"}, None),
]
PEERS = [
    {"podSelector": {"matchLabels": {"role": "client"}}},
    {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}},
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "beta"}}},
    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}},
    {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}},
    {"podSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}},
]
PORTS = [None, [{"port": "http"}], [{"protocol": "TCP", "port": 9000, "endPort": 9100}], [{"port": 5432}]]
SELECTORS = [{}, {"matchLabels": {"tier": "back"}}, {"matchLabels": {"app": "web"}}, {"matchLabels": {"role": "client"}}]


def generated_policies(seed: int) -> list[dict]:
    rng = random.Random(seed)
    policies = []
    for i in range(rng.randint(2, 4)):
        direction = rng.choice(["Ingress", "Egress", "Ingress"])
        rule = {("from" if direction == "Ingress" else "to"): rng.sample(PEERS, rng.randint(1, 2))}
        ports = rng.choice(PORTS)
        if ports:
            rule["ports"] = ports
        spec = {"podSelector": rng.choice(SELECTORS), "policyTypes": [direction],
                direction.lower(): [] if rng.random() < 0.15 else [rule]}
        if direction == "Egress":  # keep DNS out of the picture, as most egress policies do
            spec["egress"].append({"ports": [{"protocol": "UDP", "port": 53}]})
        policies.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": f"gen-{seed}-{i}", "namespace": rng.choice(["alpha", "beta"])},
                         "spec": spec})
    return policies


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name(), scenario=str(_scenario_file())))
    yield running
    lifecycle.down(running.name)


def _scenario_file():
    import tempfile

    import yaml

    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in ("alpha", "beta")]
    for ns, name, labels, port in PODS:
        container = {"name": "c", "image": "x", "command": ["sleep", "infinity"]}
        if port:
            container = {"name": "c", "image": "x", "command": ["python3", "-m", "http.server", str(port)],
                         "ports": [{"name": "http", "containerPort": port}]}
        docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
                     "spec": {"nodeName": "node-1" if ns == "alpha" else "node-2", "containers": [container]}})
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump_all(docs, handle)
    handle.close()
    return handle.name


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_live_traffic_matches_the_matrix(lab, seed):
    v1, api_client = lab.api()
    networking = client.NetworkingV1Api(api_client)
    policies = generated_policies(seed)
    for policy in policies:
        networking.create_namespaced_network_policy(policy["metadata"]["namespace"], policy)
    try:
        kube = Kube.connect(lab.kubeconfig)
        world = world_from_objects(kube.list_objects("Namespace") + kube.list_objects("Pod", None)
                                   + kube.list_objects("NetworkPolicy", None))
        live = {p.metadata.namespace + "/" + p.metadata.name: p for ns in ("alpha", "beta") for p in lab.pods(ns)}
        matrix = compute_matrix(world, [world.pod(key) for key in live])
        cells = [(c.source.key, c.destination.key, c.outcome) for c in matrix.cells()]
        assert len(cells) == len(live) * 3  # every pod → each of the three listeners

        def observed(cell):
            source, destination, outcome = cell
            if source == destination:
                return None  # a pod to itself: not a policy question
            return tcp(lab.netns(live[source]), live[destination].status.pod_ip, outcome.port, timeout=0.6)

        time.sleep(0.5)  # the nodes' policy tables follow within a reconcile
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(observed, cells))
        wrong = [f"{s} → {d}:{o.port} matrix {'allows' if o.allowed else 'denies'}, live {r}"
                 for (s, d, o), r in zip(cells, results) if r is not None and (r == "ok") != o.allowed]
        assert not wrong, "\n".join(wrong + [str(p["spec"]) for p in policies])
        outcomes = {o.allowed for s, d, o in cells if s != d}
        assert outcomes == {True, False}, "a policy set that allows or denies everything proves little"
    finally:
        for policy in policies:
            networking.delete_namespaced_network_policy(policy["metadata"]["name"], policy["metadata"]["namespace"])
