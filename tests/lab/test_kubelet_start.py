"""How the lab's kubelets start a pod: one on the pod network in two passes (its sandbox and IP
first, so that pass programs the nodes' Service and policy rules for it, as a CNI's ADD comes
before a real kubelet starts the containers), a hostNetwork pod in one (no IP of its own, no CNI
call: a real kubelet starts it at once). netdoctor's capture probes are hostNetwork pods: they
must not wait a pass behind the traffic probes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from netdoctor.lab import kubelet as kubelet_module
from netdoctor.lab.kubelet import Kubelets
from netdoctor.lab.net import Sandbox

NODE = SimpleNamespace(name="node-1", pod_cidr="10.244.1.0/24", netns="nd-t-node-1", underlay_ip="172.18.0.2")


class FakeRuntime:
    """Containers 'start' as records; a started one runs until the test ends."""

    def __init__(self):
        self.containers: dict[str, dict] = {}

    def register(self, uid, netns):
        self.containers.setdefault(uid, {})

    def start_container(self, pod, container):
        self.containers[pod["metadata"]["uid"]][container["name"]] = SimpleNamespace(
            process=SimpleNamespace(poll=lambda: None, pid=4242), restarts=0)

    def started(self, uid):
        return dict(self.containers.get(uid, {}))

    def reap(self):
        return []


class FakeStore:
    def __init__(self, pod: dict):
        self.pod = pod

    def list(self, kind):
        return [self.pod]

    def update_status(self, kind, namespace, name, status):
        self.pod = {**self.pod, "status": status}


class FakeDialect:
    def build_sandbox(self, node, uid, namespace, name, ip, resolv_conf, mtu=None):
        return Sandbox(f"nd-t-p{uid}", f"veth{uid}", ip, node)


@pytest.fixture
def kubelets(monkeypatch):
    monkeypatch.setattr(kubelet_module.cni, "of", lambda node: FakeDialect())
    return Kubelets("t", [NODE], FakeRuntime(), lambda namespace: "nameserver 10.96.0.10\n")


def _pod(host_network: bool) -> dict:
    spec = {"nodeName": NODE.name, "containers": [{"name": "probe", "image": "nicolaka/netshoot:v0.13"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"metadata": {"uid": "u1", "namespace": "shop", "name": "p"}, "spec": spec}


def _phase(store: FakeStore) -> str:
    return store.pod["status"]["phase"]


def test_a_pod_on_the_pod_network_gets_its_ip_in_one_pass_and_runs_in_the_next(kubelets):
    store = FakeStore(_pod(host_network=False))
    kubelets.reconcile(store)
    assert _phase(store) == "Pending" and store.pod["status"]["podIP"].startswith("10.244.1.")
    assert kubelets._runtime.started("u1") == {}
    kubelets.reconcile(store)
    assert _phase(store) == "Running" and set(kubelets._runtime.started("u1")) == {"probe"}


def test_a_host_network_pod_runs_after_one_pass(kubelets):
    store = FakeStore(_pod(host_network=True))
    kubelets.reconcile(store)
    assert _phase(store) == "Running" and store.pod["status"]["podIP"] == NODE.underlay_ip
    assert set(kubelets._runtime.started("u1")) == {"probe"}
