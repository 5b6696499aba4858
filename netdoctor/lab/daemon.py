"""The lab daemon: builds the network, serves the API, runs the control loop, tears it all down.

Started detached by `netdoctor lab up` as `python -m netdoctor.lab.daemon STATE_DIR READY_FD`; it
writes `ready <port>` (or `error <message>`) to READY_FD once every pod of the scenario is Ready,
then runs until SIGTERM, when it stops its processes and deletes every namespace it made.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from importlib.resources import files
from pathlib import Path

from netdoctor import manifests
from netdoctor.errors import NetdoctorError
from netdoctor.lab import addons, cni, ghosts, net
from netdoctor.lab.api import auth, kubeconfig, pki
from netdoctor.lab.api.server import ApiServer
from netdoctor.lab.api.status import ApiError
from netdoctor.lab.api.store import Store
from netdoctor.lab.client import APPLY_ORDER
from netdoctor.lab.controller import Cluster, Controller, node_object
from netdoctor.lab.dataplane import DataPlane
from netdoctor.lab.kubelet import Kubelets
from netdoctor.lab.runtime import PodRuntime
from netdoctor.lab.state import LabConfig, LabPaths

DNS_IP = "10.96.0.10"
READY_TIMEOUT = 20.0
NODE_RESOLV_CONF = f"nameserver {DNS_IP}\noptions ndots:1 timeout:1 attempts:2\n"
RESOURCE_OF = {"Namespace": "namespaces", "ConfigMap": "configmaps", "NetworkPolicy": "networkpolicies",
               "Service": "services", "Endpoints": "endpoints", "EndpointSlice": "endpointslices",
               "Deployment": "deployments", "ReplicaSet": "replicasets", "Pod": "pods"}
# A pod a scenario expects never to get Ready (a not-ready peer, a frozen rollout's new version)
# carries this annotation: `lab up` does not wait for it.
NOT_READY_ANNOTATION = "lab.netdoctor.io/expect-not-ready"


def scenario_objects(scenario: str) -> list[dict]:
    if os.path.exists(scenario):
        return manifests.load_paths([scenario])
    return manifests.load_text(files("netdoctor.lab").joinpath(f"scenarios/{scenario}.yaml").read_text(), scenario)


def system_objects(zone_file: Path) -> list[dict]:
    """CoreDNS's stand-in: a real DNS server as a Deployment in kube-system, Service kube-dns."""
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"dnsPolicy": "Default", "containers": [{
                 "name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.13.1",
                 "command": [sys.executable, "-m", "netdoctor.lab.dnsserver", "--zone", str(zone_file),
                             "--listen", "0.0.0.0", "--port", "53"],
                 "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                           {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                 "readinessProbe": {"tcpSocket": {"port": 53}}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"clusterIP": DNS_IP, "selector": labels, "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}},
    ]


def apply_objects(store: Store, objects: list[dict]) -> None:
    """Create or replace each object, namespaces first (what `lab apply` does)."""
    unknown = sorted({o["kind"] for o in objects} - set(RESOURCE_OF))
    if unknown:
        raise ApiError(422, f"the lab cannot apply kind {', '.join(unknown)}")
    for obj in sorted(objects, key=lambda o: APPLY_ORDER.index(o["kind"])):
        resource, ns = RESOURCE_OF[obj["kind"]], obj["metadata"].get("namespace")
        if resource != "namespaces":
            ns = ns or "default"
        try:
            store.create(resource, obj, ns)
        except ApiError as exc:
            if exc.code != 409:
                raise
            current = store.get(resource, ns, obj["metadata"]["name"])
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            store.replace(resource, ns, obj["metadata"]["name"], obj)


def pod_resolv_conf(namespace: str) -> str:
    return (f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
            f"nameserver {DNS_IP}\noptions ndots:5\n")


class Lab:
    """Everything one lab daemon owns, in build order; `close()` undoes it in reverse."""

    def __init__(self, paths: LabPaths):
        self.paths = paths
        self.config: LabConfig = paths.read_config()
        self.log = open(paths.log, "a", buffering=1)
        self.nodes = [net.NodeNet(self.config.name, i, self.config.overlay, self.config.cni_dialect)
                      for i in range(1, self.config.nodes + 1)]
        self.server: ApiServer | None = None
        self.controller: Controller | None = None
        self.kubelets: Kubelets | None = None

    def build(self) -> int:
        tls = pki.generate(self.paths.root / "pki", self.config.name)
        tokens = auth.new_tokens()
        net.build_fabric(self.config.name)
        for node in self.nodes:
            cni.build_node(node, [p for p in self.nodes if p != node], NODE_RESOLV_CONF)
        store = Store()
        runtime = PodRuntime(self.paths.root)
        self.kubelets = Kubelets(self.config.name, self.nodes, runtime, pod_resolv_conf)
        dataplane = DataPlane(self.nodes, self.paths.zone, self.config.policy_mode, self.config.proxy_mode,
                              self.kubelets.sandbox_of)
        cluster = Cluster(self.config.name, store, self.nodes, runtime, self.kubelets, dataplane)
        for node in self.nodes:
            store.create("nodes", node_object(node))
        addons.install(store, addons.manifests(self.config.cni, self.config.overlay, self.config.proxy_mode.value,
                                               len(self.nodes)))
        apply_objects(store, system_objects(self.paths.zone) + scenario_objects(self.config.scenario))
        ghosts.load(store, self.config.ghost_nodes, self.config.ghost_pods, self.config.ghost_policies)
        self.server = ApiServer(store, runtime, tls, tokens)
        port = self.server.start()
        kubeconfig.write(self.paths.kubeconfig, self.config.name, port, tls, tokens)
        self.controller = Controller(cluster, self.paths, self.log)
        self.controller.start()
        self._wait_ready(store)
        return port

    def _wait_ready(self, store: Store) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            pods = store.list("pods")
            if pods and all(_settled(p) for p in pods):
                if self.controller.wait_programmed(max(deadline - time.monotonic(), 0.0)):
                    return  # the Ready pods' endpoints and Service rules are programmed too
                raise NetdoctorError(f"the nodes' Service rules not programmed after {READY_TIMEOUT:.0f}s")
            time.sleep(0.05)
        waiting = [p["metadata"]["name"] for p in store.list("pods") if not _settled(p)]
        raise NetdoctorError(f"pods not ready after {READY_TIMEOUT:.0f}s: {', '.join(waiting)}")

    def close(self) -> None:
        if self.controller:
            self.controller.stop()
        if self.server:
            self.server.stop()
        if self.kubelets:
            self.kubelets.close()
        net.teardown(self.config.name)
        self.log.close()


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _settled(pod: dict) -> bool:
    """Ready, or Running and expected not to be, or on its way out."""
    meta = pod["metadata"]
    expected = (meta.get("annotations") or {}).get(NOT_READY_ANNOTATION) == "true"
    running = (pod.get("status") or {}).get("phase") == "Running"
    return _ready(pod) or (expected and running) or bool(meta.get("deletionTimestamp"))


def main(argv: list[str]) -> int:
    paths, ready_fd = LabPaths(Path(argv[0])), int(argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    paths.pid.write_text(str(os.getpid()))
    lab = Lab(paths)
    try:
        port = lab.build()
    except Exception as exc:  # reported to `lab up`, which then removes the lab
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        lab.log.write(f"build failed: {message}\n")
        os.write(ready_fd, f"error {message}\n".encode())
        lab.close()
        return 1
    os.write(ready_fd, f"ready {port}\n".encode())
    os.close(ready_fd)
    stop.wait()
    lab.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
