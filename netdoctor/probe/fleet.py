"""Probe pods: launch them safely, run typed probes in them, always clean them up.

Used by the check pipeline's probe stage (and `netdoctor cleanup`). A `ProbeFleet` owns one run:
per namespace an owner ConfigMap, and probe pods that the ConfigMap controls (no ReplicaSet can
adopt them; deleting it garbage-collects them), each with an activeDeadlineSeconds so they die even
if netdoctor is killed. The ConfigMap is owned in turn by a Job that never starts a pod and that the
cluster itself expires at the same deadline and deletes 30 s later (ttlSecondsAfterFinished), so
after a `kill -9` the garbage collector removes the whole run with no one's help. Where the cluster
refuses the Job (RBAC, quota) or suspends it, the ConfigMap stands alone (`owner_fallbacks` says
where). Everything is registered for cleanup before it is created. The pods are watched until they
run (a list, then a watch from its resourceVersion). After Ctrl-C the cleanup gets 1.3 s; what it
could not delete is named with the command that finishes the job. `cleanup_leftovers` removes what
runs left once they have expired (their owner's deadline passed), live ones only when forced. The
manifests are the data in checks/probes/; commands and parsing are in `netdoctor.probe.commands`;
a probe's commands reach it over its command channel (`netdoctor.probe.channel`), one exec for all.
"""

from __future__ import annotations

import copy
from concurrent.futures import Future
from contextlib import closing, contextmanager
import math
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from netdoctor.catalog import data_dir
from typing import Callable, Iterable, Iterator

import yaml

from netdoctor.probe import commands
from netdoctor.probe.channel import Channel
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

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: a tenth of the time
DEFAULT_IMAGE = "nicolaka/netshoot:v0.13"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "netdoctor"
RUN_LABEL = "netdoctor.io/run"
ROLE_LABEL = "netdoctor.io/role"
DEADLINE_ANNOTATION = "netdoctor.io/deadline-seconds"  # on the owner ConfigMap: the run's bound, from its creation
DEADLINE_MARGIN = 120  # seconds a probe outlives the run's own timeout
START_TIMEOUT = 120.0  # seconds to wait for probe pods to run (image pulls included)
INTERRUPT_BUDGET = 1.3  # seconds the cleanup after Ctrl-C may take: netdoctor ends within 2 s
INTERRUPT_CALL_TIMEOUT = 0.4  # seconds for each delete of that cleanup
IN_FLIGHT_WAIT = 0.5  # seconds Ctrl-C waits for the pod creations in flight to answer (cleaned too); with INTERRUPT_BUDGET under 2 s
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
class Starting:
    """A launch in progress, as `launch_all` tells its `on_change`: the probes that run already (the
    very Probe objects it returns) and the probe pods' IPs known so far, by probe name."""

    running: dict[str, Probe]
    ips: dict[str, str]


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


_DELETE_ORDER = {"Pod": 0, "ConfigMap": 1, "Job": 2}  # dependents before their owners


class FallbackReason(Enum):
    FORBIDDEN = "forbidden"  # RBAC or quota refused the Job
    SUSPENDED = "suspended"  # admission (e.g. a queueing webhook) suspended it: its deadline would never run


@dataclass(frozen=True)
class OwnerFallback:
    """A namespace where the run's owner is a bare ConfigMap: nothing there expires by itself."""

    namespace: str
    reason: FallbackReason
    detail: str  # the server's message

    def __str__(self) -> str:
        why = "cannot create" if self.reason is FallbackReason.FORBIDDEN else "the cluster suspends"
        return (f"{why} the run's expiring Job in namespace {self.namespace} ({self.detail}); its owner is a "
                f"ConfigMap, so if netdoctor is killed only 'netdoctor cleanup -n {self.namespace}' removes the probes")


class Probe:
    """A running probe pod and the typed probes it can run. Its commands go through its command
    channel (netdoctor.probe.channel), started by `connect` or by the first command; where none
    can start, by an exec each."""

    def __init__(self, kube: Kube, spec: ProbeSpec, pod: Pod):
        self.kube, self.spec, self.pod = kube, spec, pod
        self._channel: Future | None = None  # of a Channel, or None where it could not start
        self._channel_lock = threading.Lock()

    def connect(self) -> None:
        """Start the command channel in the background (the first command waits for it)."""
        with self._channel_lock:
            if self._channel is None:
                self._channel = Future()
                threading.Thread(target=self._open_channel, args=(self._channel,), name=f"channel {self.spec.name}",
                                 daemon=True).start()

    def close(self) -> None:
        """End the command channel: now, or as soon as it has started."""
        with self._channel_lock:
            opening = self._channel
        if opening is not None:
            opening.add_done_callback(_close_channel)

    def _open_channel(self, answer: Future) -> None:
        try:
            answer.set_result(Channel.open(self.kube, self.namespace, self.name))
        except (NetdoctorError, OSError):  # no bash, no temporary directory, no exec: an exec per command
            answer.set_result(None)
        except BaseException as exc:  # noqa: BLE001 - handed over to the commands waiting for the channel
            answer.set_exception(exc)

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
        self.connect()
        channel = self._channel.result()
        if channel is None:
            return self.kube.exec(self.namespace, self.name, command, "probe", timeout=timeout)
        return channel.run(command, timeout)

    def tcp_connect(self, ip: str, port: int, timeout: float = 3.0, attempts: int = 1,
                    spacing: float = 0.0) -> list[TcpResult]:
        result = self.exec(commands.tcp_command(ip, port, timeout, attempts, spacing),
                           commands.exec_deadline(timeout, stagger=spacing * attempts))
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
        if commands.interval_refused(result):
            result = self.exec(commands.ping_command(ip, size, dont_fragment, timeout, commands.OLD_PING_INTERVAL),
                               commands.exec_deadline(timeout))
        return commands.parse_ping(ip, size, result)


def _close_channel(opened: Future) -> None:
    channel = None if opened.exception() else opened.result()
    if channel is not None:
        channel.close()


def listeners_of(kube: Kube, pod: Pod, container: str | None = None, timeout: float = 10.0,
                 protocol: str = "TCP") -> ListenerTable:
    """The sockets listening (TCP) or bound (UDP) in an existing pod, from /proc/net/tcp{,6} or
    udp{,6} read by `cat` in `container` (NO_TOOL when it has none: a distroless image)."""
    try:
        result = kube.exec(pod.namespace, pod.name, commands.listeners_command(protocol), container, timeout=timeout)
    except ApiError as exc:  # no exec permission, container not running: say so, the check goes on
        return ListenerTable(ListenerStatus.UNAVAILABLE, detail=exc.server_message, container=container)
    return commands.parse_listeners(result, pod.ip, protocol, container)


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
        deadline_seconds: int | None = None,
    ):
        """`deadline_seconds`: the probes' and their owner's bound; None: the run's timeout + DEADLINE_MARGIN."""
        self.kube, self.keep = kube, keep
        self.run_id = run_id or secrets.token_hex(4)
        self.deadline_seconds = deadline_seconds or int(math.ceil(run_timeout)) + DEADLINE_MARGIN
        self.start_timeout = start_timeout
        self._created: list[ObjectRef] = []
        self._probes: list[Probe] = []  # every probe launched, to end its command channel
        self._owners: dict[str, dict] = {}  # namespace -> ownerReference
        self._owner_lock = threading.Lock()
        self._fallbacks: list[OwnerFallback] = []
        self.cleanup_failures: tuple[str, ...] = ()

    @property
    def created(self) -> tuple[ObjectRef, ...]:
        return tuple(self._created)

    @property
    def owner_fallbacks(self) -> tuple[OwnerFallback, ...]:
        return tuple(self._fallbacks)

    def __enter__(self) -> ProbeFleet:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for probe in self._probes:
            probe.close()
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
            _report_cleanup_failures(self.cleanup_failures, exc, self._finish_command())
        return False

    def launch(self, specs: Iterable[ProbeSpec]) -> list[Probe]:
        """Create the probe pods and wait until every one runs; raise ProbeLaunchError if one can't."""
        return list(self.launch_all(specs).probes.values())

    def launch_all(self, required: Iterable[ProbeSpec], optional: Iterable[ProbeSpec] = (),
                   on_change: Callable[[Starting], None] | None = None) -> Launch:
        """Like `launch`, plus `optional` probes (packet capture) whose failure to run is recorded
        in `Launch.failures` instead of raised. The required pods are created all at once (their
        namespaces' owners first), then the optional ones all at once: when a required one is
        refused, no optional pod has been created yet. `on_change` is told, from this thread, each
        time a probe starts running or a pod's IP becomes known: the caller may start using a probe
        (its captures, its command channel) while the others still start."""
        required, optional = list(required), list(optional)
        for spec in required + optional:
            self._validate(spec)
        for namespace in dict.fromkeys(spec.namespace for spec in required):
            self._owner(namespace)
        pods: list[Pod | ProbeLaunchError] = _at_once(self._create_pod, required)
        pods += _at_once(self._try_create, optional)
        states = self._wait_running(required + optional, pods, frozenset(s.name for s in optional),
                                    on_change or (lambda starting: None))
        probes = {spec.name: probe for spec, probe in zip(required + optional, states) if isinstance(probe, Probe)}
        failures = {spec.name: state for spec, state in zip(optional, states[len(required):])
                    if isinstance(state, ProbeLaunchError)}
        return Launch(probes, failures)

    def cleanup(self) -> list[str]:
        """Delete what this run created, the pods at once, then their owners (ConfigMaps, then Jobs);
        the failures, one line each."""
        failures = []
        for kind in sorted({ref.kind for ref in self._created}, key=_DELETE_ORDER.__getitem__):
            refs = [ref for ref in self._created if ref.kind == kind]
            deleted = _concurrently(lambda ref: self.kube.delete(ref.kind, ref.namespace, ref.name), refs,
                                    lambda ref: f"delete {ref.name}")
            for ref, result in zip(refs, deleted):
                if not isinstance(result, _Raised):
                    self._created.remove(ref)
                elif isinstance(result.error, ClusterError):
                    failures.append(f"{ref}: {result.error.message}")
                else:
                    raise result.error
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
        hint = f"cleanup did not finish; to finish it run: {self._finish_command()} (left: {', '.join(map(str, left))})"
        if isinstance(exc, Interrupted):
            exc.hint = hint
            return
        raise Interrupted("interrupted", hint=hint) from exc

    def _finish_command(self) -> str:
        """The cleanup that deletes what this run left: forced, as its owner is still live."""
        namespaces = sorted({ref.namespace for ref in self._created})
        return " && ".join(f"netdoctor cleanup -n {ns} --run {self.run_id} --force" for ns in namespaces)

    def _delete_within(self, budget: float) -> list[ObjectRef]:
        """Delete what this run created within `budget` seconds, owners first (their dependents are
        garbage-collected with them), every call short. A second Ctrl-C stops it at once. What is left."""
        deadline = time.monotonic() + budget
        try:
            for ref in sorted(self._created, key=lambda r: -_DELETE_ORDER[r.kind]):
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
        """The ownerReference of the namespace's owner ConfigMap, created (after its Job) on first use
        (by one of the pods created at once; the others wait for it)."""
        with self._owner_lock:
            if namespace not in self._owners:
                body = owner_manifest(self.run_id, namespace, self.deadline_seconds, self._owner_job(namespace))
                with self._creating(ObjectRef("ConfigMap", namespace, body["metadata"]["name"])):
                    created = self.kube.create_config_map(namespace, body)
                self._owners[namespace] = _owner_reference("v1", "ConfigMap", created)
            return self._owners[namespace]

    def _owner_job(self, namespace: str) -> dict | None:
        """The ownerReference of the run's expiring Job in `namespace`; None, with a fallback
        recorded, where the cluster refuses it or creates it suspended (its deadline never runs)."""
        body = owner_job_manifest(self.run_id, namespace, self.deadline_seconds)
        ref = ObjectRef("Job", namespace, body["metadata"]["name"])
        try:
            with self._creating(ref):
                created = self.kube.create_job(namespace, body)
        except Forbidden as exc:
            self._fallbacks.append(OwnerFallback(namespace, FallbackReason.FORBIDDEN, exc.server_message))
            return None
        if (created.get("spec") or {}).get("suspend"):
            self.kube.delete(ref.kind, ref.namespace, ref.name)
            self._created.remove(ref)
            self._fallbacks.append(OwnerFallback(namespace, FallbackReason.SUSPENDED, "it was created suspended"))
            return None
        # Not blockOwnerDeletion: that would need update on jobs/finalizers where OwnerReferencesPermissionEnforcement runs.
        return _owner_reference("batch/v1", "Job", created, block_owner_deletion=False)

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

    def _wait_running(self, specs: list[ProbeSpec], pods: list[Pod | ProbeLaunchError], optional: frozenset[str],
                      on_change: Callable[[Starting], None]) -> list[Probe | ProbeLaunchError]:
        """Each probe running, or (optional ones only) the error that stopped it."""
        namespaces = sorted({spec.namespace for spec, pod in zip(specs, pods) if isinstance(pod, Pod)})
        events: queue.Queue = queue.Queue()
        watches = [_PodWatch(self.kube, ns, f"{RUN_LABEL}={self.run_id}", events) for ns in namespaces]
        for watch in watches:
            watch.start()
        try:
            return self._follow(specs, pods, optional, _PodView(), events, on_change)
        finally:
            for watch in watches:
                watch.stopped.set()

    def _follow(self, specs: list[ProbeSpec], pods: list[Pod | ProbeLaunchError], optional: frozenset[str],
                view: _PodView, events: queue.Queue,
                on_change: Callable[[Starting], None]) -> list[Probe | ProbeLaunchError]:
        deadline = time.monotonic() + self.start_timeout
        running: dict[str, Probe] = {}
        told = Starting({}, {})
        while True:
            states = [pod if isinstance(pod, ProbeLaunchError) else view.state(spec, pod) for spec, pod in zip(specs, pods)]
            failed = next((s for spec, s in zip(specs, states)
                           if isinstance(s, ProbeLaunchError) and spec.name not in optional), None)
            if failed:
                raise failed
            for spec, state in zip(specs, states):
                if isinstance(state, Pod) and spec.name not in running:
                    running[spec.name] = self._track(Probe(self.kube, spec, state))
            states = [running.get(spec.name, state) for spec, state in zip(specs, states)]
            starting = Starting(dict(running), {spec.name: ip for spec, pod in zip(specs, pods)
                                                if isinstance(pod, Pod) and (ip := view.ip(pod))})
            if starting != told:
                told = starting
                on_change(starting)
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

    def _track(self, probe: Probe) -> Probe:
        """A probe that runs: its command channel, once opened, ends with the run."""
        self._probes.append(probe)
        return probe


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

    def ip(self, created: Pod) -> str | None:
        """The pod's IP as last seen (a pod has it before it runs)."""
        pod = self._pods.get((created.namespace, created.name))
        return pod.ip if pod is not None else None

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


def _at_once(create, specs: list[ProbeSpec]) -> list:
    """`create(spec)` for every spec at once, each in its own thread (one API round trip for all);
    the results in spec order, or the first spec's error once every call has answered. Ctrl-C waits
    (IN_FLIGHT_WAIT at most) for the calls in flight: a pod they still make must be cleaned up too."""
    results = _concurrently(create, specs, lambda spec: f"create {spec.name}", IN_FLIGHT_WAIT)
    failed = next((r.error for r in results if isinstance(r, _Raised)), None)
    if failed is not None:
        raise failed
    return results


def _concurrently(call, items: list, name, interrupted_wait: float = 0.0) -> list:
    """`call(item)` for every item at once, each in its own thread named `name(item)`: the results in
    item order, an exception as `_Raised`. Ctrl-C waits `interrupted_wait` at most for the calls in
    flight, then goes on."""
    results: list = [None] * len(items)
    answered = [threading.Event() for _ in items]

    def one(i: int, item) -> None:
        try:
            results[i] = call(item)
        except Exception as exc:  # noqa: BLE001 - handed over to the caller's thread
            results[i] = _Raised(exc)
        finally:
            answered[i].set()

    started = 0
    try:
        for i, item in enumerate(items):
            started = i + 1  # counted before start(): Ctrl-C may come while it waits for the thread to run
            threading.Thread(target=one, args=(i, item), name=name(item), daemon=True).start()
        for event in answered:
            event.wait()
    except BaseException:
        deadline = time.monotonic() + interrupted_wait
        for event in answered[:started]:
            event.wait(max(0.0, deadline - time.monotonic()))
        raise
    return results


@dataclass(frozen=True)
class _Raised:
    error: Exception


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


def _report_cleanup_failures(failures: tuple[str, ...], exc: BaseException | None, finish: str) -> None:
    """Never silent, never masking: raise if all went well, else attach to the original error."""
    hint = f"to delete what netdoctor left behind run: {finish}"
    text = "cleanup failed: " + "; ".join(failures)
    if exc is None:
        raise ClusterError(text, hint=hint)
    exc.add_note(text)
    if isinstance(exc, NetdoctorError):
        exc.hint = f"{exc.hint}; {text}; {hint}" if exc.hint else f"{text}; {hint}"


# ---------------------------------------------------------------- manifests


def _template(name: str) -> dict:
    return yaml.load((data_dir() / "probes" / name).read_text(), Loader=_LOADER)


def owner_manifest(run_id: str, namespace: str, deadline_seconds: int, owner: dict | None = None) -> dict:
    """The run's owner ConfigMap, from checks/probes/owner.yaml; `owner`: its Job's ownerReference."""
    body = _template("owner.yaml")
    body["metadata"].update(name=f"netdoctor-run-{run_id}", namespace=namespace,
                            annotations={DEADLINE_ANNOTATION: str(deadline_seconds)})
    body["metadata"]["labels"][RUN_LABEL] = run_id
    if owner:
        body["metadata"]["ownerReferences"] = [owner]
    return body


def owner_job_manifest(run_id: str, namespace: str, deadline_seconds: int) -> dict:
    """The run's expiring Job, from checks/probes/owner-job.yaml."""
    body = _template("owner-job.yaml")
    body["metadata"].update(name=f"netdoctor-run-{run_id}", namespace=namespace)
    body["metadata"]["labels"][RUN_LABEL] = run_id
    body["spec"]["activeDeadlineSeconds"] = deadline_seconds
    return body


def _owner_reference(api_version: str, kind: str, created: dict, *, block_owner_deletion: bool = True) -> dict:
    """A controller reference to `created`: no other controller adopts what carries it."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": created["metadata"]["name"],
        "uid": created["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }


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


class RunState(Enum):
    LIVE = "live"  # its owner has not expired: a check may still be using its probes
    EXPIRED = "expired"  # past its deadline (or no deadline known): nothing uses it any more


@dataclass(frozen=True)
class Leftover:
    """What one run left in one namespace (pods first, then their owners), and whether it is live."""

    run_id: str
    namespace: str
    objects: tuple[ObjectRef, ...]
    state: RunState
    expires: datetime | None  # when its owner expires (expired: when it did); None: nothing says


@dataclass(frozen=True)
class Cleanup:
    """What `cleanup_leftovers` deleted (or, in a dry run, would delete) and the live runs it spared."""

    deleted: tuple[ObjectRef, ...]
    spared: tuple[Leftover, ...]
    unlisted: tuple[str, ...] = ()  # kinds the user may not list, with the server's message


def cleanup_leftovers(kube: Kube, namespace: str | None, run_id: str | None = None, *, force: bool = False,
                      dry_run: bool = False, now: datetime | None = None) -> Cleanup:
    """Delete the probe pods and owners that runs left (one namespace or all; or one run's), pods
    first; a live run only with `force`; nothing with `dry_run` (what would go is listed)."""
    leftovers, unlisted = find_leftovers(kube, namespace, run_id, now or datetime.now(timezone.utc))
    doomed = [left for left in leftovers if force or left.state is RunState.EXPIRED]
    deleted = []
    for ref in sorted((ref for left in doomed for ref in left.objects), key=lambda r: _DELETE_ORDER[r.kind]):
        if dry_run or kube.delete(ref.kind, ref.namespace, ref.name):
            deleted.append(ref)
    return Cleanup(tuple(deleted), tuple(left for left in leftovers if left not in doomed), unlisted)


def find_leftovers(kube: Kube, namespace: str | None, run_id: str | None,
                   now: datetime) -> tuple[list[Leftover], tuple[str, ...]]:
    """Every run's objects, by namespace and run, and the kinds the user may not list. Jobs may be
    unlistable where the user may not use them (the runs then have ConfigMap owners that say their
    deadline); pods and ConfigMaps must be listable."""
    selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{RUN_LABEL}" + (f"={run_id}" if run_id else "")
    runs: dict[tuple[str, str], list[dict]] = {}
    unlisted = []
    for kind in _DELETE_ORDER:
        try:
            objects = kube.list_objects(kind, namespace, label_selector=selector)
        except Forbidden as exc:
            if kind != "Job":
                raise
            unlisted.append(f"jobs.batch: {exc.server_message}")
            continue
        for obj in objects:
            meta = obj["metadata"]
            runs.setdefault((meta["namespace"], meta["labels"][RUN_LABEL]), []).append(obj)
    return [_leftover(run, ns, objects, now) for (ns, run), objects in sorted(runs.items())], tuple(unlisted)


def _leftover(run_id: str, namespace: str, objects: list[dict], now: datetime) -> Leftover:
    refs = sorted((ObjectRef(o["kind"], namespace, o["metadata"]["name"]) for o in objects),
                  key=lambda r: (_DELETE_ORDER[r.kind], r.name))
    expires = _expiry(objects)
    state = RunState.LIVE if expires is not None and expires > now else RunState.EXPIRED
    return Leftover(run_id, namespace, tuple(refs), state, expires)


def _expiry(objects: list[dict]) -> datetime | None:
    """When a run expires: as its Job says (the Job's end, if it has ended or is being deleted), else
    its owner ConfigMap's annotation, else its unfinished probes' own deadlines."""
    of_kind = {kind: [o for o in objects if o["kind"] == kind] for kind in _DELETE_ORDER}
    if of_kind["Job"]:
        return min(_job_expiry(job) for job in of_kind["Job"])
    bounds = [_after(o["metadata"]["creationTimestamp"], (o["metadata"].get("annotations") or {}).get(DEADLINE_ANNOTATION))
              for o in of_kind["ConfigMap"]]
    if not of_kind["ConfigMap"]:
        bounds = [_after((p.get("status") or {}).get("startTime") or p["metadata"]["creationTimestamp"],
                         p["spec"].get("activeDeadlineSeconds"))
                  for p in of_kind["Pod"] if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    known = [b for b in bounds if b is not None]
    return max(known) if known else None


def _job_expiry(job: dict) -> datetime:
    meta, status = job["metadata"], job.get("status") or {}
    ended = [c["lastTransitionTime"] for c in status.get("conditions") or []
             if c.get("type") in ("Complete", "Failed") and c.get("status") == "True" and c.get("lastTransitionTime")]
    if ended or meta.get("deletionTimestamp"):
        return _timestamp(min(ended or [meta["deletionTimestamp"]]))
    start = status.get("startTime") or meta["creationTimestamp"]
    return _after(start, job["spec"].get("activeDeadlineSeconds")) or _timestamp(start)


def _after(timestamp: str, seconds) -> datetime | None:
    return _timestamp(timestamp) + timedelta(seconds=int(seconds)) if seconds is not None else None


def _timestamp(text: str) -> datetime:
    """An API server's RFC 3339 time (`2024-05-01T12:00:00Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
