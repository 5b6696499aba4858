"""The lab's control plane loop: scheduler, workloads, Jobs, kubelets, endpoints, data plane, faults.

Created and started by the lab daemon. One thread reconciles everything whenever the store
changes, and at least every TICK seconds (readiness probes, process exits, deadlines, Job TTLs). `Cluster`
is what faults act on: the store, the nodes and the pieces that program them.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, TextIO

from netdoctor.lab import dnsserver, jobs, net, workloads
from netdoctor.lab.api.status import ApiError
from netdoctor.lab.dataplane import DataPlane
from netdoctor.lab.endpoints import reconcile_endpoints
from netdoctor.lab.faults import CATALOG
from netdoctor.lab.kubelet import Kubelets, now
from netdoctor.lab.runtime import PodRuntime
from netdoctor.lab.sh import LabCommandError
from netdoctor.lab.state import LabPaths, generation, write_json_atomically
from netdoctor.labels import Selector, from_match_labels

TICK = 0.1
SETTLE_TIMEOUT = 10.0  # a fault's effects that have not settled by then are reported as still settling


@dataclass
class Cluster:
    name: str
    store: object
    nodes: list[net.NodeNet]
    runtime: PodRuntime
    kubelets: Kubelets
    dataplane: DataPlane
    saved: dict = field(default_factory=dict)  # what faults replaced, to put back

    def node(self, name: str) -> net.NodeNet:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ApiError(404, f'nodes "{name}" not found')

    def peers(self, node: net.NodeNet) -> list[net.NodeNet]:
        return [n for n in self.nodes if n != node]


class Controller:
    def __init__(self, cluster: Cluster, paths: LabPaths, log: TextIO):
        self._cluster = cluster
        self._paths = paths
        self._log = log
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="controller", daemon=True)
        self._faults = FaultManager(cluster, paths)
        self.passes = 0  # reconcile passes completed: a change seen now is programmed two passes later
        self._settled_at: dict[str, tuple] = {}  # controller -> the store version (and inputs) it last left unchanged
        self._pod_node: tuple[int, dict[str, str]] = (-1, {})
        cluster.store.subscribe(lambda *_: self._wake.set())

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            version = self._cluster.store.resource_version()
            try:
                self.reconcile()
            except Exception:  # a bad object must not stop the cluster: log it, go on
                self._log.write(traceback.format_exc())
                self._log.flush()
            self.passes += 1
            self._faults.report(lambda since: self._settled(version, since))

    def _settled(self, version: int, since: float) -> bool:
        """The pass that just ended found nothing to change, no pod is on its way out on a live
        node, readiness was probed after `since` and the DNS servers reloaded their zone: what the
        store holds is what the endpoints, the nodes' rules and DNS answer with, and a change made
        at `since` is in it."""
        cluster = self._cluster
        if cluster.store.resource_version() != version or not cluster.kubelets.probed_since(since):
            return False
        if time.time() - cluster.dataplane.zone_written_at < 2 * dnsserver.POLL_SECONDS:
            return False  # the DNS servers have not reloaded the zone yet
        down = cluster.kubelets.down_nodes
        return not any(p["metadata"].get("deletionTimestamp") and p["spec"].get("nodeName") not in down
                       for p in cluster.store.list("pods"))

    def wait_programmed(self, timeout: float) -> bool:
        """Wait for a whole pass that started after this call: what the store holds now (a pod just
        Ready) is then in the EndpointSlices and the nodes' Service rules too."""
        target = self.passes + 2
        deadline = time.monotonic() + timeout
        while self.passes < target and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        return self.passes >= target

    def reconcile(self) -> None:
        cluster = self._cluster
        store = cluster.store
        self._faults.reconcile()
        self._unless_settled("deployments", lambda: workloads.reconcile_deployments(store))
        self._unless_settled("replicasets", lambda: workloads.reconcile_replicasets(store))
        jobs.reconcile_jobs(store, datetime.now(timezone.utc))
        down = frozenset(cluster.kubelets.down_nodes)
        self._unless_settled("scheduler", lambda: schedule(store, cluster.nodes, down), down)
        cluster.kubelets.reconcile(store)
        self._unless_settled("endpoints", lambda: reconcile_endpoints(store))
        cluster.dataplane.reconcile(store, self._pod_nodes())
        publish_nodes(store, cluster.nodes, cluster.kubelets.down_nodes)

    def _unless_settled(self, controller: str, run: Callable[[], None], *inputs) -> None:
        """Run a controller whose only inputs are the store's objects (and `inputs`), unless the last
        time it ran, over this very store, it changed nothing: it would change nothing again. Most
        passes come from the tick over a store that did not change."""
        key = (self._cluster.store.resource_version(), *inputs)
        if self._settled_at.get(controller) == key:
            return
        run()
        if self._cluster.store.resource_version() == key[0]:
            self._settled_at[controller] = key

    def _pod_nodes(self) -> dict[str, str]:
        """Each pod's node by uid, listed again only when the store changed."""
        version = self._cluster.store.resource_version()
        if self._pod_node[0] != version:
            self._pod_node = (version, {p["metadata"]["uid"]: p["spec"].get("nodeName")
                                        for p in self._cluster.store.list("pods")})
        return self._pod_node[1]


def schedule(store, nodes: list[net.NodeNet], down: set[str]) -> None:
    """Bind unscheduled pods: spread replicas of one owner, then the least busy node."""
    pods = store.list("pods")
    for pod in pods:
        if pod["spec"].get("nodeName") or (pod.get("status") or {}).get("phase") not in (None, "Pending"):
            continue
        candidates = [n for n in nodes if n.name not in down and _fits(pod, n.name, store)]
        if not candidates:
            continue
        owner = (workloads.controller_of(pod) or {}).get("uid")
        load = {n.name: [p for p in pods if p["spec"].get("nodeName") == n.name] for n in candidates}
        best = min(candidates, key=lambda n: (
            sum(1 for p in load[n.name] if owner and (workloads.controller_of(p) or {}).get("uid") == owner),
            len(load[n.name]), n.index))
        pod["spec"]["nodeName"] = best.name
        try:
            store.replace("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], pod)
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise
        pods = store.list("pods")


def _fits(pod: dict, node_name: str, store) -> bool:
    selector: Selector = from_match_labels(pod["spec"].get("nodeSelector"))
    if not pod["spec"].get("nodeSelector"):
        return True
    return selector.matches(store.get("nodes", None, node_name)["metadata"].get("labels") or {})


def node_object(node: net.NodeNet) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": {
            "kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
    }


def publish_nodes(store, nodes: list[net.NodeNet], down: set[str]) -> None:
    for node in nodes:
        current = store.get("nodes", None, node.name)
        ready = "Unknown" if node.name in down else "True"
        old = {c["type"]: c for c in (current.get("status") or {}).get("conditions") or []}
        if old.get("Ready", {}).get("status") == ready:
            continue
        status = {
            "addresses": [{"type": "InternalIP", "address": node.underlay_ip},
                          {"type": "Hostname", "address": node.name}],
            "conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": now(),
                            "lastTransitionTime": now(),
                            "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown",
                            "message": "kubelet is posting ready status" if ready == "True"
                            else "Kubelet stopped posting node status."}],
            "nodeInfo": {"kubeletVersion": "v1.36.2-lab", "kubeProxyVersion": "v1.36.2-lab",
                         "containerRuntimeVersion": "lab://netns", "osImage": "netdoctor lab",
                         "kernelVersion": "", "operatingSystem": "linux", "architecture": "amd64",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        }
        store.update_status("nodes", None, node.name, status)


class FaultManager:
    """Brings the applied faults in line with the desired set that `lab break`/`lab fix` write."""

    def __init__(self, cluster: Cluster, paths: LabPaths):
        self._cluster = cluster
        self._paths = paths
        self._applied: dict[str, str] = {}
        self._seen: str | None = None  # the generation of the desired faults last read
        self._pending: tuple[dict, float] | None = None  # the record `lab break`/`fix` waits for, and since when

    def report(self, settled) -> None:
        """Tell `lab break`/`lab fix` their change is done once its effects settled (`settled(since)`,
        asked after every pass): pods rolled out or gone, readiness probed, Service rules programmed;
        after SETTLE_TIMEOUT as still settling."""
        if self._pending is None:
            return
        record, since = self._pending
        quiet = settled(since)
        if quiet or time.time() - since > SETTLE_TIMEOUT:
            write_json_atomically(self._paths.applied_faults, record | {"settled": quiet})
            self._pending = None

    def reconcile(self) -> None:
        try:
            written = generation(self._paths.faults)
        except FileNotFoundError:
            return
        if written == self._seen:
            return
        self._seen = written
        desired = json.loads(self._paths.faults.read_text())
        errors = {}
        for name in [n for n in self._applied if n not in desired]:
            errors.update(self._run(name, self._applied[name], revert=True))
        for name, target in desired.items():
            if name not in self._applied:
                errors.update(self._run(name, target, revert=False))
        record = {"generation": written, "active": dict(self._applied), "errors": errors}
        if errors:
            write_json_atomically(self._paths.applied_faults, record | {"settled": True})
        else:
            self._pending = (record, time.time())

    def _run(self, name: str, target: str, revert: bool) -> dict[str, str]:
        fault = CATALOG[name]
        try:
            (fault.revert if revert else fault.apply)(self._cluster, target)
        except (ApiError, KeyError) as exc:  # the target is not in this lab: the user's to fix
            return {name: {"message": getattr(exc, "message", None) or str(exc), "usage": True}}
        except (LabCommandError, OSError) as exc:
            return {name: {"message": getattr(exc, "message", None) or str(exc), "usage": False}}
        except Exception as exc:  # the lab's bug: `lab break` says it now, not after waiting out its timeout
            return {name: {"message": f"the lab daemon failed: {type(exc).__name__}: {exc}", "usage": False}}
        if revert:
            self._applied.pop(name, None)
        else:
            self._applied[name] = target
        return {}
