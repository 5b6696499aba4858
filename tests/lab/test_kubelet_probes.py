"""The lab's kubelets probe readiness on a faster clock than a real one, but keep the pods' own
periods apart: a pod that asks for an hour (netdoctor's never-Ready probes) is probed once, not
ten times a second, and a fault's settling still gets a fresh result from every pod."""

from __future__ import annotations

import time
from types import SimpleNamespace

from netdoctor.lab.kubelet import STARTUP_PROBE_PERIOD, Kubelets, PodState


class CountingKubelets(Kubelets):
    """The real decision when to probe; the probe itself (an exec in the node) only counted."""

    def __init__(self):
        alive = SimpleNamespace(process=SimpleNamespace(poll=lambda: None))
        super().__init__("t", [], SimpleNamespace(started=lambda uid: {"main": alive}), lambda node: "")
        self.probes = 0

    def _run_probe(self, pod, container, probe, state) -> bool:
        self.probes += 1
        return False


def _pod(period: int | None) -> dict:
    probe = {"exec": {"command": ["false"]}, **({"periodSeconds": period} if period else {})}
    return {"spec": {"containers": [{"name": "main", "readinessProbe": probe}]}}


def _passes(kubelets: CountingKubelets, pod: dict, state: PodState, seconds: float) -> None:
    node = SimpleNamespace(name="node-1")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kubelets._probe(pod, state, node)
        time.sleep(STARTUP_PROBE_PERIOD / 4)


def _state() -> PodState:
    return PodState("uid-1", SimpleNamespace(node=SimpleNamespace(name="node-1")), time.time())


def test_a_pod_asking_for_a_long_period_is_probed_once_while_the_default_keeps_the_quick_cadence():
    hourly, default = CountingKubelets(), CountingKubelets()
    _passes(hourly, _pod(3600), _state(), 0.6)
    _passes(default, _pod(None), _state(), 0.6)
    assert hourly.probes == 1
    assert default.probes >= 3  # every 0.1 s until Ready: `lab up` and rollouts stay quick


def test_a_fault_settling_gets_a_fresh_round_from_a_pod_with_a_long_period():
    kubelets, state, pod = CountingKubelets(), _state(), _pod(3600)
    kubelets._pods[state.uid] = state  # the pod this kubelet runs
    _passes(kubelets, pod, state, 0.2)
    moment = time.time()
    assert not kubelets.probed_since(moment)
    _passes(kubelets, pod, state, 0.2)
    assert kubelets.probes == 2 and kubelets.probed_since(moment)
