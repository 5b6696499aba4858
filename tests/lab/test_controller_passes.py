"""The lab's controller passes every 0.1 s, mostly over a store that did not change: the controllers
that read only the objects run again only when they changed, and the data plane renders the nodes'
tables again only when what they are rendered from changed."""

from __future__ import annotations

import io

import pytest

from netdoctor.lab.api.store import Store
from netdoctor.lab.controller import Cluster, Controller
from netdoctor.lab.dataplane import DataPlane
from netdoctor.lab.state import PolicyMode, ProxyMode


class CountingPlane(DataPlane):
    """The real decision whether to render; the rendering itself (nft in the nodes) only counted."""

    renders = 0

    def _program(self, store, pod_node) -> None:
        self.renders += 1


@pytest.fixture
def sandboxes() -> dict:
    return {}


@pytest.fixture
def plane(tmp_path, sandboxes) -> CountingPlane:
    return CountingPlane([], tmp_path / "zone.json", PolicyMode.DROP, ProxyMode.NFTABLES, sandboxes.get)


def rendered(plane: CountingPlane, store: Store, pod_node: dict | None = None) -> bool:
    before = plane.renders
    plane.reconcile(store, pod_node or {})
    return plane.renders > before


def test_a_pass_over_an_unchanged_store_renders_nothing(plane):
    store = Store(seed=1)
    assert rendered(plane, store)
    assert not rendered(plane, store)
    store.create("namespaces", {"metadata": {"name": "demo"}})
    assert rendered(plane, store)
    assert not rendered(plane, store)


def test_a_fault_or_a_new_sandbox_renders_again(plane, sandboxes):
    store = Store(seed=1)
    assert rendered(plane, store)
    plane.stale_nodes.add("node-1")
    assert rendered(plane, store)
    plane.dns_overrides["api.shop.svc.cluster.local."] = ["10.96.0.99"]
    assert rendered(plane, store)
    assert rendered(plane, store, {"uid-1": "node-1"}) is False  # a pod without a sandbox yet
    sandboxes["uid-1"] = type("Sandbox", (), {"netns": "nd-x-p1"})()
    assert rendered(plane, store, {"uid-1": "node-1"})
    assert not rendered(plane, store, {"uid-1": "node-1"})


def test_a_policy_lag_renders_every_pass(plane):
    """The rules then change with time alone: a pod is admitted once its lag has passed."""
    store = Store(seed=1)
    plane.policy_lag = 0.9
    assert rendered(plane, store)
    assert rendered(plane, store)


def test_a_controller_that_changed_nothing_runs_again_only_once_the_store_changed():
    store = Store(seed=1)
    controller = Controller(Cluster("t", store, [], None, None, None), None, io.StringIO())
    runs = []

    def idle():
        runs.append("idle")

    def busy():
        runs.append("busy")
        store.create("configmaps", {"metadata": {"name": f"c{len(runs)}", "namespace": "default"}})

    controller._unless_settled("idle", idle)
    controller._unless_settled("idle", idle)
    assert runs == ["idle"]  # the second pass found the store as the first one left it
    controller._unless_settled("busy", busy)
    controller._unless_settled("busy", busy)
    assert runs == ["idle", "busy", "busy"]  # what changes the store is not settled
    controller._unless_settled("idle", idle)
    controller._unless_settled("idle", idle)
    assert runs == ["idle", "busy", "busy", "idle"]  # the store changed since: once more
    controller._unless_settled("idle", idle, frozenset({"node-2"}))
    assert runs[-1] == "idle" and len(runs) == 5  # other inputs (the nodes down) count too
