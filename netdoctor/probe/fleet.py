"""Probe pods: launch them safely, run typed probes in them, always clean them up.

Used by the check pipeline's probe stage (and `netdoctor cleanup`). A `ProbeFleet` owns one run:
a per-namespace owner ConfigMap, registered for cleanup before it is created, and probe pods that
the ConfigMap controls (no ReplicaSet can adopt them; deleting it garbage-collects them), each with
an activeDeadlineSeconds so they die even if netdoctor is killed. The pods are watched until they
run (a list, then a watch from its resourceVersion). After Ctrl-C the cleanup gets 1.3 s; what it
could not delete is named with the command that finishes the job. The pod manifest is the data in
checks/probes/probe.yaml; commands and parsing are in `netdoctor.probe.commands`.
"""

from __future__ import annotations

import copy
from contextlib import closing, contextmanager
import math
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass
from enum import Enum
from netdoctor.catalog import data_dir
from typing import Iterable, Iterator

import yaml

from netdoctor.probe import commands
from netdoctor.errors import ClusterError, Interrupted, NetdoctorError, ProbeError
from netdoctor.cluster.kube import ApiError, Expired, Forbidden, Kube, WatchEventType
from netdoctor.cluster.objects import ContainerStateKind, Pod
from netdoctor.observations import (
    DnsResult,
    ExecResult,
    ListenerStatus,
    ListenerTable,
    PingResult,
    ResolvConf,
    TcpResult,
)

DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "netdoctor"
RUN_LABEL = "netdoctor.io/run"
ROLE_LABEL = "netdoctor.io/role"
DEADLINE_MARGIN = 120  # seconds a probe outlives the run's own timeout
START_TIMEOUT = 120.0  # seconds to wait for probe pods to run (image pulls included)
INTERRUPT_BUDGET = 1.3  # seconds the cleanup after Ctrl-C may take: netdoctor ends within 2 s
INTERRUPT_CALL_TIMEOUT = 0.4  # seconds for each delete of that cleanup
NONROOT_UID = 65534  # probes without capabilities run as nobody: PodSecurity "restricted" admits them
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONTAINER_ERROR_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Capability(Enum):
    NET_RAW = "NET_RAW"  # raw-socket ping
    NET_ADMIN = "NET_ADMIN"  # with NET_RAW: packet capture


class ProbeRole(Enum):
    CLIENT = "client"  # sends traffic as an anonymous pod
    SOURCE = "source"  # impersonates a source pod (its labels) to be judged by the same policies
    CAPTURE = "capture"  # captures packets: on a node (host network) for the hop-by-hop verdict


@dataclass(frozen=True)
class ProbeSpec:
    name: str  # unique within the run, a DNS label: the pod is netdoctor-<run>-<name>
    namespace: str
    role: ProbeRole = ProbeRole.CLIENT
    node_name: str | None = None  # None: let the scheduler place it
    image: str = DEFAULT_IMAGE
    capabilities: frozenset[Capability] = frozenset()
    host_network: bool = False
    impersonate_labels: tuple[tuple[str, str], ...] = ()  # a source pod's labels (role SOURCE)


class LaunchFailure(Enum):
    POD_SECURITY = "pod-security"  # admission refused the pod (403 "violates PodSecurity")
    IMAGE_PULL = "image-pull"
    CONTAINER_ERROR = "container-error"
    UNSCHEDULABLE = "unschedulable"
    REJECTED = "rejected"  # the pod failed or ended before running (kubelet admission, deadline)
    GONE = "gone"  # someone deleted it
    TIMEOUT = "timeout"


class ProbeLaunchError(ProbeError):
    """A probe pod could not run. `reason` says why; `spec` which probe (so the caller can say
    which checklist layers are blocked); `server_message` quotes the cluster."""

    def __init__(self, reason: LaunchFailure, spec: ProbeSpec, message: str, server_message: str = "", hint=None):
        super().__init__(message, hint=hint)
        self.reason, self.spec, self.server_message = reason, spec, server_message


@dataclass(frozen=True)
class Launch:
    probes: dict[str, Probe]  # by spec name: every required probe, and the optional ones that run
    failures: dict[str, ProbeLaunchError]  # optional probes that could not run, and why


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class Probe:
    """A running probe pod and the typed probes it can run."""

    def __init__(self, kube: Kube, spec: ProbeSpec, pod: Pod):
        self.kube, self.spec, self.pod = kube, spec, pod

    @property
    def name(self) -> str:
        return self.pod.name

    @property
    def namespace(self) -> str:
        return self.pod.namespace

    @property
    def ip(self) -> str | None:
        return self.pod.ip

    def exec(self, command: list[str], timeout: float) -> ExecResult:
        return self.kube.exec(self.namespace, self.name, command, "probe", timeout=timeout)

    def tcp_connect(self, ip: str, port: int, timeout: float = 3.0, attempts: int = 1) -> list[TcpResult]:
        result = self.exec(commands.tcp_command(ip, port, timeout, attempts), commands.exec_deadline(timeout))
        return commands.parse_tcp(ip, port, result)

    def dns_query(self, server: str, name: str, rdtype: str = "A", timeout: float = 2.0, attempts: int = 3) -> list[DnsResult]:
        query = commands.dns_query(name, rdtype)
        command = commands.dns_command(server, query, timeout, attempts)
        return commands.parse_dns(server, query, self.exec(command, commands.exec_deadline(timeout)))

    def resolv_conf(self) -> ResolvConf:
        result = self.exec(commands.resolv_conf_command(), commands.exec_deadline(2.0))
        return commands.parse_resolv_conf(result)

    def ping(self, ip: str, size: int = 56, dont_fragment: bool = True, timeout: float = 2.0) -> PingResult:
        result = self.exec(commands.ping_command(ip, size, dont_fragment, timeout), commands.exec_deadline(timeout))
        return commands.parse_ping(ip, size, result)


def listeners_of(kube: Kube, pod: Pod, container: str | None = None, timeout: float = 10.0) -> ListenerTable:
    """The TCP sockets listening in an existing pod, from /proc/net/tcp{,6} (needs only `cat`)."""
    try:
        result = kube.exec(pod.namespace, pod.name, commands.listeners_command(), container, timeout=timeout)
    except ApiError as exc:  # no exec permission, container not running: say so, the check goes on
        return ListenerTable(ListenerStatus.UNAVAILABLE, detail=exc.server_message)
    return commands.parse_listeners(result, pod.ip)


class ProbeFleet:
    """The probe pods of one run. Use as a context manager: leaving it deletes everything it
    created (unless keep=True), whether the block succeeded, failed or was interrupted."""

    def __init__(
        self,
        kube: Kube,
        *,
        run_timeout: float,
        keep: bool = False,
        run_id: str | None = None,
        start_timeout: float = START_TIMEOUT,
    ):
        self.kube, self.keep = kube, keep
        self.run_id = run_id or secrets.token_hex(4)
        self.deadline_seconds = int(math.ceil(run_timeout)) + DEADLINE_MARGIN
        self.start_timeout = start_timeout
        self._created: list[ObjectRef] = []
        self._owners: dict[str, dict] = {}  # namespace -> ownerReference
        self.cleanup_failures: tuple[str, ...] = ()

    @property
    def created(self) -> tuple[ObjectRef, ...]:
        return tuple(self._created)

    def __enter__(self) -> ProbeFleet:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.keep:
            return False
        if isinstance(exc, (KeyboardInterrupt, Interrupted)):
            self._cleanup_interrupted(exc)
            return False
        try:
            self.cleanup_failures = tuple(self.cleanup())
        except KeyboardInterrupt as interrupt:  # Ctrl-C during a slow cleanup: the bounded one takes over
            self._cleanup_interrupted(interrupt)
            raise
        if self.cleanup_failures:
            _report_cleanup_failures(self.cleanup_failures, exc)
        return False

    def launch(self, specs: Iterable[ProbeSpec]) -> list[Probe]:
        """Create the probe pods and wait until every one runs; raise ProbeLaunchError if one can't."""
        return list(self.launch_all(specs).probes.values())

    def launch_all(self, required: Iterable[ProbeSpec], optional: Iterable[ProbeSpec] = ()) -> Launch:
        """Like `launch`, plus `optional` probes (packet capture) whose failure to run is recorded
        in `Launch.failures` instead of raised. Required pods are created first: when one is
        refused, no optional pod has been created yet."""
        required, optional = list(required), list(optional)
        for spec in required + optional:
            self._validate(spec)
        pods: list[Pod | ProbeLaunchError] = [self._create_pod(spec) for spec in required]
        pods += [self._try_create(spec) for spec in optional]
        states = self._wait_running(required + optional, pods, frozenset(s.name for s in optional))
        probes = {spec.name: Probe(self.kube, spec, pod) for spec, pod in zip(required + optional, states)
                  if isinstance(pod, Pod)}
        failures = {spec.name: state for spec, state in zip(optional, states[len(required):])
                    if isinstance(state, ProbeLaunchError)}
        return Launch(probes, failures)

    def cleanup(self) -> list[str]:
        """Delete what this run created, pods first; the failures, one line each."""
        failures = []
        for ref in sorted(self._created, key=lambda r: r.kind != "Pod"):
            try:
                self.kube.delete(ref.kind, ref.namespace, ref.name)
            except ClusterError as exc:
                failures.append(f"{ref}: {exc.message}")
            else:
                self._created.remove(ref)
        return failures

    def pod_name(self, spec: ProbeSpec) -> str:
        return f"netdoctor-{self.run_id}-{spec.name}"

    # ------------------------------------------------------------ interrupted

    def _cleanup_interrupted(self, exc: BaseException) -> None:
        """The bounded cleanup after Ctrl-C or SIGTERM; if it could not finish, the error's hint
        says what is left and how to delete it."""
        left = self._delete_within(INTERRUPT_BUDGET)
        if not left:
            return
        namespaces = sorted({ref.namespace for ref in left})
        finish = " && ".join(f"netdoctor cleanup -n {ns} --run {self.run_id}" for ns in namespaces)
        hint = f"cleanup did not finish; to finish it run: {finish} (left: {', '.join(map(str, left))})"
        if isinstance(exc, Interrupted):
            exc.hint = hint
            return
        raise Interrupted("interrupted", hint=hint) from exc

    def _delete_within(self, budget: float) -> list[ObjectRef]:
        """Delete what this run created within `budget` seconds, owners first (each one's pods are
        garbage-collected with it), every call short. A second Ctrl-C stops it at once. What is left."""
        deadline = time.monotonic() + budget
        try:
            for ref in sorted(self._created, key=lambda r: r.kind == "Pod"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    self.kube.delete(ref.kind, ref.namespace, ref.name, timeout=min(INTERRUPT_CALL_TIMEOUT, remaining))
                except ClusterError:  # stalled or refused: it stays in the list of what is left
                    continue
                self._created.remove(ref)
        except KeyboardInterrupt:  # the second Ctrl-C: stop here; what is left is reported
            pass
        return list(self._created)

    # ------------------------------------------------------------ creation

    def _validate(self, spec: ProbeSpec) -> None:
        name = self.pod_name(spec)
        if not _DNS_LABEL.match(spec.name) or len(name) > 63:
            raise ValueError(f"probe name {spec.name!r} does not make a valid pod name ({name})")
        if ObjectRef("Pod", spec.namespace, name) in self._created:
            raise ValueError(f"probe {spec.name!r} already launched in {spec.namespace}")

    @contextmanager
    def _creating(self, ref: ObjectRef) -> Iterator[None]:
        """Registered before the create call, so a create whose answer is lost is cleaned too;
        forgotten again when the server answered with an error (then nothing was created)."""
        self._created.append(ref)
        try:
            yield
        except ApiError as exc:
            self._created.remove(ref)
            if isinstance(exc, Forbidden) and not exc.pod_security and exc.hint is None:
                exc.hint = (f"netdoctor's probes need create/delete on pods and configmaps, and create on "
                            f"pods/exec, in namespace {ref.namespace}")
            raise

    def _owner(self, namespace: str) -> dict:
        if namespace not in self._owners:
            body = owner_manifest(self.run_id, namespace)
            with self._creating(ObjectRef("ConfigMap", namespace, body["metadata"]["name"])):
                created = self.kube.create_config_map(namespace, body)
            self._owners[namespace] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": created["metadata"]["name"],
                "uid": created["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        return self._owners[namespace]

    def _try_create(self, spec: ProbeSpec) -> Pod | ProbeLaunchError:
        try:
            return self._create_pod(spec)
        except ProbeLaunchError as exc:
            return exc
        except ApiError as exc:  # RBAC, quota, a namespace that does not exist
            return ProbeLaunchError(LaunchFailure.REJECTED, spec, f"the {spec.role.value} probe {spec.name} was "
                                    f"refused: {exc.message}", exc.server_message)

    def _create_pod(self, spec: ProbeSpec) -> Pod:
        owner = self._owner(spec.namespace)
        body = probe_manifest(spec, self.pod_name(spec), self.run_id, owner, self.deadline_seconds)
        try:
            with self._creating(ObjectRef("Pod", spec.namespace, body["metadata"]["name"])):
                return self.kube.create_pod(spec.namespace, body)
        except Forbidden as exc:
            if exc.pod_security:
                raise ProbeLaunchError(
                    LaunchFailure.POD_SECURITY,
                    spec,
                    f"namespace {spec.namespace} does not admit the {spec.role.value} probe: {exc.server_message}",
                    exc.server_message,
                ) from None
            raise

    # ------------------------------------------------------------ waiting

    def _wait_running(self, specs: list[ProbeSpec], pods: list[Pod | ProbeLaunchError],
                      optional: frozenset[str] = frozenset()) -> list[Pod | ProbeLaunchError]:
        """Each pod running, or (optional ones only) the error that stopped it."""
        namespaces = sorted({spec.namespace for spec, pod in zip(specs, pods) if isinstance(pod, Pod)})
        events: queue.Queue = queue.Queue()
        watches = [_PodWatch(self.kube, ns, f"{RUN_LABEL}={self.run_id}", events) for ns in namespaces]
        for watch in watches:
            watch.start()
        try:
            return self._follow(specs, pods, optional, _PodView(), events)
        finally:
            for watch in watches:
                watch.stopped.set()

    def _follow(self, specs: list[ProbeSpec], pods: list[Pod | ProbeLaunchError], optional: frozenset[str],
                view: _PodView, events: queue.Queue) -> list[Pod | ProbeLaunchError]:
        deadline = time.monotonic() + self.start_timeout
        while True:
            states = [pod if isinstance(pod, ProbeLaunchError) else view.state(spec, pod) for spec, pod in zip(specs, pods)]
            failed = next((s for spec, s in zip(specs, states)
                           if isinstance(s, ProbeLaunchError) and spec.name not in optional), None)
            if failed:
                raise failed
            if all(not isinstance(s, str) for s in states):
                return states
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                late = [(spec, s) for spec, s in zip(specs, states) if isinstance(s, str)]
                if all(spec.name in optional for spec, _ in late):
                    return [_timeout([spec], [s], self.start_timeout) if isinstance(s, str) else s
                            for spec, s in zip(specs, states)]
                raise _timeout(specs, states, self.start_timeout)
            try:
                view.apply(events.get(timeout=remaining))
                while not events.empty():
                    view.apply(events.get_nowait())
            except queue.Empty:
                continue


@dataclass(frozen=True)
class _Listed:
    """A namespace's probe pods as listed; the watch goes on from there."""

    namespace: str
    pods: tuple[Pod, ...]


@dataclass(frozen=True)
class _Changed:
    type: WatchEventType
    pod: Pod


class _PodView:
    """The run's probe pods as the watches have told so far."""

    def __init__(self):
        self._listed: set[str] = set()
        self._pods: dict[tuple[str, str], Pod] = {}

    def apply(self, item: _Listed | _Changed | Exception) -> None:
        """Take in what a watch said; raise the error that stopped it."""
        if isinstance(item, Exception):
            raise item
        if isinstance(item, _Listed):
            self._listed.add(item.namespace)
            self._pods = {key: p for key, p in self._pods.items() if key[0] != item.namespace}
            self._pods.update({(p.namespace, p.name): p for p in item.pods})
        elif item.type is WatchEventType.DELETED:
            self._pods.pop((item.pod.namespace, item.pod.name), None)
        else:
            self._pods[(item.pod.namespace, item.pod.name)] = item.pod

    def state(self, spec: ProbeSpec, created: Pod) -> Pod | ProbeLaunchError | str:
        if spec.namespace not in self._listed:
            return "not listed yet"
        return _launch_state(spec, self._pods.get((spec.namespace, created.name)))


class _PodWatch(threading.Thread):
    """Follows one namespace's probe pods: a list, then a watch from its resourceVersion, watched
    again when the server ends it and listed again when that version expired. Every change goes
    to `events`, and so does the error that stops it, for the waiting thread to raise."""

    def __init__(self, kube: Kube, namespace: str, selector: str, events: queue.Queue):
        super().__init__(name=f"watch probes in {namespace}", daemon=True)
        self.kube, self.namespace, self.selector, self.events = kube, namespace, selector, events
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            version = None
            while not self.stopped.is_set():
                if version is None:
                    listed = self.kube.snapshot("Pod", self.namespace, self.selector)
                    self.events.put(_Listed(self.namespace, tuple(Pod.from_api(o) for o in listed.items)))
                    version = listed.resource_version
                version = self._watch(version)
        except Exception as exc:  # noqa: BLE001 - handed over: the waiting thread raises it
            self.events.put(exc)

    def _watch(self, version: str) -> str | None:
        """One watch from `version` until the server ends it: the version reached, None if expired."""
        try:
            with closing(self.kube.watch("Pod", self.namespace, self.selector, version)) as stream:
                for event in stream:
                    version = event.resource_version
                    if event.type is not WatchEventType.BOOKMARK:
                        self.events.put(_Changed(event.type, Pod.from_api(dict(event.object))))
                    if self.stopped.is_set():
                        break
        except Expired:
            return None
        return version


def _launch_state(spec: ProbeSpec, pod: Pod | None) -> Pod | ProbeLaunchError | str:
    """The running Pod, a failure, or a short text saying what it is waiting for."""
    if pod is None or pod.deleting:
        return ProbeLaunchError(LaunchFailure.GONE, spec, f"probe pod for {spec.name} was deleted while starting")
    state = next((c for c in pod.container_states if c.name == "probe"), None)
    if pod.phase == "Running" and state and state.kind is ContainerStateKind.RUNNING:
        return pod
    if pod.phase in ("Failed", "Succeeded"):
        detail = "; ".join(s for s in (_condition_text(pod), state and state.reason) if s) or pod.phase
        return ProbeLaunchError(LaunchFailure.REJECTED, spec, f"probe pod {pod.name} ended before running: {detail}")
    if state and state.reason in IMAGE_PULL_REASONS:
        return ProbeLaunchError(
            LaunchFailure.IMAGE_PULL,
            spec,
            f"probe image {spec.image} cannot be pulled on node {pod.node_name}: {state.reason}"
            + (f" ({state.message})" if state.message else ""),
            state.message,
            hint="use --image to point at a copy of the netshoot image the nodes can pull",
        )
    if state and state.reason in CONTAINER_ERROR_REASONS:
        return ProbeLaunchError(
            LaunchFailure.CONTAINER_ERROR, spec, f"probe pod {pod.name} cannot start: {state.reason}: {state.message}",
            state.message,
        )
    return _waiting_text(pod, state)


def _waiting_text(pod: Pod, state) -> str:
    scheduled = pod.condition("PodScheduled")
    if scheduled and scheduled.status == "False":
        return f"unschedulable: {scheduled.message or scheduled.reason}"
    if state and state.reason:
        return f"{state.reason}" + (f": {state.message}" if state.message else "")
    return f"phase {pod.phase}"


def _condition_text(pod: Pod) -> str:
    return "; ".join(f"{c.reason}: {c.message}" for c in pod.conditions if c.status == "False" and c.message)


def _timeout(specs: list[ProbeSpec], states: list, waited: float) -> ProbeLaunchError:
    pending = [(spec, text) for spec, text in zip(specs, states) if isinstance(text, str)]
    spec, text = pending[0]
    reason = LaunchFailure.UNSCHEDULABLE if text.startswith("unschedulable") else LaunchFailure.TIMEOUT
    names = ", ".join(f"{s.name} ({t})" for s, t in pending)
    return ProbeLaunchError(reason, spec, f"probe pods not running after {waited:g}s: {names}")


def _report_cleanup_failures(failures: tuple[str, ...], exc: BaseException | None) -> None:
    """Never silent, never masking: raise if all went well, else attach to the original error."""
    hint = "run 'netdoctor cleanup' to delete what netdoctor left behind"
    text = "cleanup failed: " + "; ".join(failures)
    if exc is None:
        raise ClusterError(text, hint=hint)
    exc.add_note(text)
    if isinstance(exc, NetdoctorError):
        exc.hint = f"{exc.hint}; {text}; {hint}" if exc.hint else f"{text}; {hint}"


# ---------------------------------------------------------------- manifests


def _template(name: str) -> dict:
    return yaml.safe_load((data_dir() / "probes" / name).read_text())


def owner_manifest(run_id: str, namespace: str) -> dict:
    body = _template("owner.yaml")
    body["metadata"].update(name=f"netdoctor-run-{run_id}", namespace=namespace)
    body["metadata"]["labels"][RUN_LABEL] = run_id
    return body


def probe_manifest(spec: ProbeSpec, name: str, run_id: str, owner: dict, deadline_seconds: int) -> dict:
    """The probe pod for `spec`, from checks/probes/probe.yaml."""
    body = copy.deepcopy(_template("probe.yaml"))
    meta, pod = body["metadata"], body["spec"]
    labels = dict(spec.impersonate_labels)
    labels.update(meta["labels"])
    labels.update({RUN_LABEL: run_id, ROLE_LABEL: spec.role.value})
    meta.update(name=name, namespace=spec.namespace, labels=labels, ownerReferences=[owner])
    pod["activeDeadlineSeconds"] = deadline_seconds
    if spec.node_name:
        pod["nodeName"] = spec.node_name
    if spec.host_network:
        pod.update(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")
    container = pod["containers"][0]
    container["image"] = spec.image
    container["args"] = [str(deadline_seconds)]
    security = container["securityContext"]
    if spec.capabilities:
        security["capabilities"]["add"] = sorted(c.value for c in spec.capabilities)
    else:
        security.update(runAsNonRoot=True, runAsUser=NONROOT_UID, runAsGroup=NONROOT_UID)
    if spec.impersonate_labels:  # never Ready: it must not receive the impersonated Service's traffic
        container["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 3600}
    return body


def cleanup_leftovers(kube: Kube, namespace: str | None, run_id: str | None = None) -> list[str]:
    """Delete every probe pod and owner ConfigMap netdoctor left (one namespace or all), or
    those of one run."""
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{RUN_LABEL}" + (f"={run_id}" if run_id else "")
    deleted = []
    for kind in ("Pod", "ConfigMap"):
        for obj in kube.list_objects(kind, namespace, label_selector=selector):
            ref = ObjectRef(kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
            if kube.delete(ref.kind, ref.namespace, ref.name):
                deleted.append(str(ref))
    return deleted
