"""The lab's kubelets: run scheduled pods in sandboxes, probe readiness, publish pod status.

Called by the lab controller on every reconcile, for all nodes at once. A new pod gets its sandbox
and IP in one pass (Pending, its IP published, so the pass programs the nodes' Service and policy
rules for it, as a CNI's ADD and the agents it informs come before a real kubelet starts the
containers) and its containers in the next (Running). Readiness probes run from
the node's network namespace (as a kubelet's do) in a small thread pool every PROBE_PERIOD
seconds (faster while a pod is not Ready yet), or at the pod's own periodSeconds on the lab's
faster clock when that is longer (netdoctor's never-Ready probe pods ask for 3600 s: a kubelet
probes them once, not ten times a second); the lab acts on the first result (no
failureThreshold) so faults show at once, and a fault's settling gets a fresh round on every
pod. A pod marked for deletion is stopped gracefully: its containers get SIGTERM, are not
restarted and are still probed (a terminating endpoint can be serving); when they have all
exited, or at the deletionTimestamp (SIGKILL), the kubelet deletes the pod with grace 0. A pod
may ask for its IP with Calico's `cni.projectcalico.org/ipAddrs` annotation (a JSON list holding
one address of its node's pod CIDR).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable
from datetime import datetime, timezone

from netdoctor.lab import cni, net, sh
from netdoctor.lab.api.status import ApiError
from netdoctor.lab.runtime import PodRuntime

PROBE_PERIOD = 0.5
STARTUP_PROBE_PERIOD = 0.1  # until a pod is Ready, so that `lab up` and rollouts are quick
PROBE_TIMEOUT = 1.0
PROBE_CLOCK = 100  # a declared periodSeconds counts in hundredths of a second here: the default 10 s is 0.1 s
DEFAULT_PERIOD_SECONDS = 10
IP_ADDRS_ANNOTATION = "cni.projectcalico.org/ipAddrs"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PodState:
    """What a kubelet remembers of a pod it runs."""

    uid: str
    sandbox: net.Sandbox
    started_at: float
    ready: dict[str, bool] = field(default_factory=dict)
    probes: dict[str, Future] = field(default_factory=dict)
    next_probe: float = 0.0
    finished: str | None = None  # "Succeeded", "Failed" or "DeadlineExceeded"
    kill_at: float | None = None  # set when a graceful stop began: when SIGKILL ends it
    round_at: float = 0.0  # when the latest round of readiness probes began
    probed_at: float = 0.0  # when the latest round whose every result is in `ready` began


class Kubelets:
    def __init__(self, lab: str, nodes: list[net.NodeNet], runtime: PodRuntime,
                 resolv_conf: Callable[[str], str]):
        self._lab = lab
        self._nodes = {n.name: n for n in nodes}
        self._runtime = runtime
        self._resolv_conf = resolv_conf
        self._pools = {n.name: net.IpPool(n.pod_cidr) for n in nodes}
        self._pods: dict[str, PodState] = {}
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")
        self.down_nodes: set[str] = set()
        self.pod_mtu: dict[str, int] = {}  # a fault may give a node's new pods another MTU
        self._round_wanted = 0.0  # pods whose latest round began before this are probed at once

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for uid in list(self._pods):
            self._teardown(uid)

    # --- reconcile ----------------------------------------------------------------------------
    def reconcile(self, store) -> None:
        pods = store.list("pods")
        live = {p["metadata"]["uid"] for p in pods}
        for uid in list(self._pods):
            if uid not in live:
                self._teardown(uid)
        exits = {(e.pod_uid, e.container): e.exit_code for e in self._runtime.reap()}
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if node not in self._nodes or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            self._sync_pod(store, pod, exits)

    def _sync_pod(self, store, pod: dict, exits: dict) -> None:
        uid = pod["metadata"]["uid"]
        node = self._nodes[pod["spec"]["nodeName"]]
        if node.name in self.down_nodes and (uid not in self._pods or _terminating(pod)):
            return  # a dead kubelet starts nothing and finishes no deletion
        if uid not in self._pods:
            if _terminating(pod):
                _delete_now(store, pod)  # deleted before it ever ran
                return
            waiting = self._cannot_start(pod, node)
            if waiting:
                self._publish_waiting(store, pod, node, *waiting)
                return
            self._pods[uid] = self._start(pod, node)
            if not pod["spec"].get("hostNetwork"):
                self._publish(store, pod, {**self._status(pod, self._pods[uid], node), "phase": "Pending"})
                return  # its containers start on the next pass, after this one programmed the nodes for its IP
            # A hostNetwork pod has no IP of its own (no CNI ADD, nothing to program): it starts at once.
        state = self._pods[uid]
        if _terminating(pod) and self._stopped(pod, state):
            self._teardown(uid)
            _delete_now(store, pod)
            return
        if not _terminating(pod):
            self._handle_exits(pod, state, exits)
            self._start_missing(pod, state)
        self._enforce_deadline(pod, state)
        self._probe(pod, state, node)
        self._publish(store, pod, self._status(pod, state, node))
        if state.finished:  # its final status is out; reconcile skips Succeeded/Failed pods from now on
            self._teardown(uid)

    def _stopped(self, pod: dict, state: PodState) -> bool:
        """A graceful stop: SIGTERM once; done when every container exited or the grace ran out."""
        if state.kill_at is None:
            state.kill_at = _timestamp(pod["metadata"]["deletionTimestamp"])
            self._runtime.terminate(state.uid)
        return self._runtime.all_exited(state.uid) or time.time() >= state.kill_at

    def _cannot_start(self, pod: dict, node: net.NodeNet) -> tuple[str, str, str] | None:
        """(reason, message, image) when the pod can't start: an image that can't be pulled, or
        an IP it asks for that its node can't give."""
        failure = pull_failure(pod)
        if failure:
            return "ErrImagePull", failure[1], failure[0]
        requested = requested_ip(pod)
        if requested and not self._pools[node.name].available(requested):
            return ("ContainerCreating", f"failed to set up sandbox: cannot assign {requested}: not free in "
                    f"{node.pod_cidr} of {node.name}", "")
        return None

    def _start(self, pod: dict, node: net.NodeNet) -> PodState:
        uid = pod["metadata"]["uid"]
        if pod["spec"].get("hostNetwork"):
            sandbox = net.Sandbox(node.netns, "", node.underlay_ip, node)
        else:
            ip = self._pools[node.name].take(requested_ip(pod))
            meta = pod["metadata"]
            sandbox = cni.of(node).build_sandbox(node, uid, meta["namespace"], meta["name"], ip,
                                                 self._resolv_conf(meta["namespace"]), self.pod_mtu.get(node.name))
        self._runtime.register(uid, sandbox.netns)
        return PodState(uid, sandbox, time.time())

    def _start_missing(self, pod: dict, state: PodState) -> None:
        if state.finished:
            return
        running = self._runtime.started(state.uid)
        spec = pod["spec"]
        for container in list(spec.get("containers") or []) + list(spec.get("ephemeralContainers") or []):
            if container["name"] not in running:
                self._runtime.start_container(pod, container)

    def _handle_exits(self, pod: dict, state: PodState, exits: dict) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        for name in containers:
            code = exits.get((state.uid, name))
            if code is None:
                continue
            if policy == "Always" or (policy == "OnFailure" and code != 0):
                self._runtime.start_container(pod, next(c for c in pod["spec"]["containers"] if c["name"] == name))
        started = self._runtime.started(state.uid)
        done = [started[n] for n in containers if n in started and started[n].exit_code is not None]
        if policy != "Always" and len(done) == len(containers) and not state.finished:
            state.finished = "Succeeded" if all(c.exit_code == 0 for c in done) else "Failed"

    def _enforce_deadline(self, pod: dict, state: PodState) -> None:
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline is not None and not state.finished and time.time() - state.started_at > deadline:
            state.finished = "DeadlineExceeded"

    # --- readiness ----------------------------------------------------------------------------
    def probed_since(self, moment: float) -> bool:
        """Every pod running on a live node has readiness results from probes begun after
        `moment`: what a change made then did to readiness is in the pods' status. A pod whose
        round began before `moment` gets a new one at the next pass, whatever its period."""
        self._round_wanted = max(self._round_wanted, moment)
        return all(state.probed_at >= moment for state in self._pods.values()
                   if not state.finished and state.sandbox.node.name not in self.down_nodes)

    def _probe(self, pod: dict, state: PodState, node: net.NodeNet) -> None:
        for name, future in list(state.probes.items()):
            if future.done():
                state.ready[name] = future.result()
                del state.probes[name]
        if not state.probes:
            state.probed_at = state.round_at
        if node.name in self.down_nodes:
            state.ready = {c["name"]: False for c in pod["spec"]["containers"]}
            return
        due = time.time() >= state.next_probe or state.round_at < self._round_wanted
        if not due or state.probes:  # one round at a time
            return
        ready = bool(state.ready) and all(state.ready.values())
        state.round_at = time.time()
        state.next_probe = state.round_at + max(PROBE_PERIOD if ready else STARTUP_PROBE_PERIOD,
                                                _declared_period(pod) / PROBE_CLOCK)
        started = self._runtime.started(state.uid)
        for container in pod["spec"]["containers"]:
            name, probe = container["name"], container.get("readinessProbe")
            alive = name in started and started[name].process.poll() is None
            if probe is None or not alive:
                state.ready[name] = alive
            else:
                state.probes[name] = self._executor.submit(self._run_probe, pod, container, probe, state)
        if not state.probes:
            state.probed_at = state.round_at

    def _run_probe(self, pod: dict, container: dict, probe: dict, state: PodState) -> bool:
        try:
            if "exec" in probe:
                return self._exec_probe(pod, container, probe["exec"].get("command") or [])
            if "tcpSocket" in probe:
                port = _port(probe["tcpSocket"]["port"], container)
                with self._connect(state, probe["tcpSocket"].get("host"), port):
                    return True
            if "httpGet" in probe:
                return self._http_probe(state, probe["httpGet"], container)
        except (OSError, http.client.HTTPException, subprocess.TimeoutExpired, ValueError):
            return False
        return True

    def _exec_probe(self, pod: dict, container: dict, command: list[str]) -> bool:
        try:
            process = self._runtime.exec(pod, container["name"], command, stdin=False, tty=False)
        except FileNotFoundError:
            return False
        try:
            return process.wait(timeout=PROBE_TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    def _connect(self, state: PodState, host: str | None, port: int) -> socket.socket:
        sock = sh.socket_in(state.sandbox.node.netns)
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.connect((host or state.sandbox.ip, port))
        except OSError:
            sock.close()
            raise
        return sock

    def _http_probe(self, state: PodState, spec: dict, container: dict) -> bool:
        port = _port(spec["port"], container)
        host = spec.get("host") or state.sandbox.ip
        conn = http.client.HTTPConnection(host, port, timeout=PROBE_TIMEOUT)
        conn.sock = self._connect(state, host, port)
        try:
            conn.request("GET", spec.get("path", "/"), headers={"User-Agent": "kube-probe/1.36"})
            return 200 <= conn.getresponse().status < 400
        finally:
            conn.close()

    # --- status -------------------------------------------------------------------------------
    def _publish(self, store, pod: dict, status: dict) -> None:
        if _comparable(pod.get("status") or {}) != _comparable(status):
            try:
                store.update_status("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], status)
            except ApiError as exc:
                if exc.code != 404:  # deleted meanwhile: the next pass tears it down
                    raise

    def _status(self, pod: dict, state: PodState, node: net.NodeNet) -> dict:
        old = pod.get("status") or {}
        started = self._runtime.started(state.uid)
        containers = pod["spec"]["containers"]
        all_ready = not state.finished and all(state.ready.get(c["name"], False) for c in containers)
        phase = {"Succeeded": "Succeeded", "Failed": "Failed", "DeadlineExceeded": "Failed"}.get(
            state.finished or "", "Running")
        status = {
            "phase": phase,
            "hostIP": node.underlay_ip,
            "hostIPs": [{"ip": node.underlay_ip}],
            "podIP": state.sandbox.ip,
            "podIPs": [{"ip": state.sandbox.ip}],
            "startTime": old.get("startTime") or now(),
            "qosClass": "BestEffort",
            "conditions": _conditions(old, all_ready),
            "containerStatuses": [_container_status(c, started.get(c["name"]), state) for c in containers],
        }
        if state.finished == "DeadlineExceeded":
            status.update(reason="DeadlineExceeded", message="Pod was active on the node longer than the specified deadline")
        ephemeral = pod["spec"].get("ephemeralContainers") or []
        if ephemeral:
            status["ephemeralContainerStatuses"] = [_container_status(c, started.get(c["name"]), state) for c in ephemeral]
        return status

    def _publish_waiting(self, store, pod: dict, node: net.NodeNet, reason: str, message: str, image: str) -> None:
        """A pod that can't start stays Pending, its containers waiting: an image that can't be
        pulled (ErrImagePull, then ImagePullBackOff), or a sandbox that can't be made."""
        old = pod.get("status") or {}
        tried = any((c.get("state") or {}).get("waiting") for c in old.get("containerStatuses") or [])
        if reason == "ErrImagePull" and tried:
            reason, message = "ImagePullBackOff", f'Back-off pulling image "{image}"'
        status = {
            "phase": "Pending", "hostIP": node.underlay_ip, "hostIPs": [{"ip": node.underlay_ip}],
            "startTime": old.get("startTime") or now(), "qosClass": "BestEffort",
            "conditions": _conditions(old, False),
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                                   "started": False, "restartCount": 0,
                                   "state": {"waiting": {"reason": reason, "message": message}}}
                                  for c in pod["spec"]["containers"]],
        }
        if _comparable(old) != _comparable(status):
            store.update_status("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], status)

    def _teardown(self, uid: str) -> None:
        state = self._pods.pop(uid, None)
        if state is None:
            return
        self._runtime.stop_pod(uid)
        if state.sandbox.host_veth:  # hostNetwork pods share the node's namespace
            net.delete_netns(state.sandbox.netns)
            self._pools[state.sandbox.node.name].give_back(state.sandbox.ip)

    def sandbox_of(self, uid: str) -> net.Sandbox | None:
        state = self._pods.get(uid)
        return state.sandbox if state else None

    def local_pod_uids(self, node: str) -> list[str]:
        return [uid for uid, s in self._pods.items() if s.sandbox.node.name == node]


def pull_failure(pod: dict) -> tuple[str, str] | None:
    """Images are not pulled in the lab, but one from a registry under the reserved `.invalid`
    domain fails as a real pull would: (image, the container runtime's message)."""
    for container in pod["spec"].get("containers") or []:
        image = container.get("image", "")
        host = image.split("/", 1)[0] if "/" in image else ""
        if host.split(":")[0].endswith(".invalid"):
            return image, (f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
                           f'failed to do request: Head "https://{host}/v2/": dial tcp: lookup '
                           f'{host.split(":")[0]}: no such host')
    return None


def requested_ip(pod: dict) -> str | None:
    """The address Calico's `cni.projectcalico.org/ipAddrs` annotation asks for, if any."""
    text = ((pod["metadata"].get("annotations") or {}).get(IP_ADDRS_ANNOTATION) or "").strip()
    if not text:
        return None
    try:
        addresses = json.loads(text)
    except ValueError:
        return text  # not JSON: the pool refuses it as not free
    return str(addresses[0]) if isinstance(addresses, list) and addresses else text


def _terminating(pod: dict) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _timestamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _delete_now(store, pod: dict) -> None:
    """The kubelet's last word on a stopped pod: delete it with grace 0."""
    try:
        store.delete("pods", pod["metadata"]["namespace"], pod["metadata"]["name"], grace_seconds=0)
    except ApiError as exc:
        if exc.code != 404:  # gone already (its namespace was deleted, say)
            raise


def _port(port, container: dict) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"named port {port} not declared")


def _conditions(old: dict, ready: bool) -> list[dict]:
    previous = {c["type"]: c for c in old.get("conditions") or []}
    wanted = {"PodReadyToStartContainers": True, "Initialized": True, "Ready": ready,
              "ContainersReady": ready, "PodScheduled": True}
    conditions = []
    for kind, value in wanted.items():
        text = "True" if value else "False"
        before = previous.get(kind)
        stamp = before["lastTransitionTime"] if before and before["status"] == text else now()
        conditions.append({"type": kind, "status": text, "lastProbeTime": None, "lastTransitionTime": stamp})
    return conditions


def _container_status(container: dict, process, state: PodState) -> dict:
    running = process is not None and process.process.poll() is None and not state.finished
    if running:
        started_at = datetime.fromtimestamp(state.started_at, timezone.utc)
        current = {"running": {"startedAt": started_at.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    elif process is not None and process.process.poll() is not None:
        code = process.process.returncode
        current = {"terminated": {"exitCode": code if code >= 0 else 128 - code,
                                  "reason": "Completed" if code == 0 else "Error"}}
    else:
        current = {"waiting": {"reason": "ContainerCreating"}}
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "containerID": f"lab://{process.process.pid}" if process else "",
        "ready": running and state.ready.get(container["name"], False),
        "started": running,
        "restartCount": process.restarts if process else 0,
        "state": current,
    }


def _comparable(status: dict) -> dict:
    return {k: v for k, v in status.items() if k != "startTime"}


def _declared_period(pod: dict) -> float:
    """The shortest periodSeconds of the pod's readiness probes (Kubernetes' default when unset)."""
    return min((float(c["readinessProbe"].get("periodSeconds") or DEFAULT_PERIOD_SECONDS)
                for c in pod["spec"]["containers"] if c.get("readinessProbe")), default=DEFAULT_PERIOD_SECONDS)
