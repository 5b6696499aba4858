"""The lab's data plane renders the nodes' tables again only when what they are rendered from changed
(the controller passes every 0.1 s, mostly over a store that did not change)."""

from __future__ import annotations

import pytest

from netdoctor.lab.api.store import Store
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
