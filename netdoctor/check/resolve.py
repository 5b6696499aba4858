"""The resolve stage: read the API objects behind a check and build its Facts.

Called by check.command with a connected Kube. Turns "unknown Service" into one line (exit 3) that says
whether the namespace itself is missing (the API server does not), and a --port that names no port
of the Service (or of the pods) into a usage error listing those there are, before anything is
created. Picks the source: --from (in any namespace), or a probe on a node other than a backend's,
impersonating an allowed pod when the backends are ingress-isolated. Evaluates the NetworkPolicies
for source → each backend. Reads are bounded by the question, not the cluster: the namespaces
involved (their policies, their labels as metadata only), pods by selector, the nodes check.nodes
picks. What a read-only user may not read (nodes, kube-system) costs only the
checks that need it: it is recorded as `Unread`, and the run goes on. The reads that do not wait
for the target's answer (the DNS Service and pods, the namespaces' policies and labels, the
cluster's CNI and proxy) are sent at once, in threads (`_ReadAhead`), and each is answered, or
raises, where the reading order asks for it: a check makes ~10 round trips in a row, not ~30.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from netdoctor.check import cluster_kind, nodes as node_reads
from netdoctor.check.nodes import MAX_BACKEND_NODES, MAX_DNS_NODES, NodeChoice
from netdoctor.check.target import PortArg
from netdoctor.errors import ClusterError, UsageError
from netdoctor.cluster.kube import Forbidden, Kube, NotFound
from netdoctor.labels import from_match_labels
from netdoctor.model import (
    Facts, Kind, Layer, NearMiss, PolicyFlow, PortProblem, Ref, SourceDns, Unread, probe_excluded,
)
from netdoctor.cluster.objects import Pod, Service, ServicePort
from netdoctor.observations import ResolvConf

DNS_NAMESPACE, DNS_SERVICE, DNS_SELECTOR = "kube-system", "kube-dns", "k8s-app=kube-dns"
PROBE_LABELS = (("app.kubernetes.io/managed-by", "netdoctor"),)
CLUSTER_DOMAIN = "cluster.local"
CLUSTER_FIRST_NDOTS, RESOLVER_NDOTS = 5, 1  # the kubelet's ndots for ClusterFirst; the resolver's own default
_T = TypeVar("_T")


@dataclass(frozen=True)
class Request:
    target: Ref
    namespace: str | None
    source: Ref | None  # its namespace None: the target's
    port: PortArg | None
    nodes: NodeChoice = NodeChoice()
    anonymous_in: str | None = None  # no --from: an anonymous probe in this namespace, never impersonating
    pods_only: bool = False  # a smoke flow to a workload's pods: their own ports, not a Service's


def resolve(kube: Kube, req: Request) -> Facts:
    ns = req.namespace or kube.namespace
    reads = _ReadAhead(kube)
    kind = reads.ahead(cluster_kind.read, kube)
    _read_ahead(reads, req, ns)
    return _resolve(reads, req, ns, kind)


class _ReadAhead:
    """Stands in for the cluster wrapper in `_resolve`: a read `start`ed ahead runs in its own
    thread, and a call with the same method and arguments takes its answer (or its error); any
    other read goes out when called. Daemon threads: a read in flight never holds up the exit
    (Ctrl-C while the API server stalls)."""

    def __init__(self, kube: Kube):
        self._kube = kube
        self._started: dict[tuple, Future] = {}

    @property
    def namespace(self) -> str:
        return self._kube.namespace

    def ahead(self, read: Callable[..., _T], *args) -> Future:
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(read(*args))
            except BaseException as exc:  # handed to whoever asks for the answer
                future.set_exception(exc)

        threading.Thread(target=run, name="read ahead", daemon=True).start()
        return future

    def start(self, method: str, *args) -> None:
        if (method, args) not in self._started:
            self._started[(method, args)] = self.ahead(getattr(self._kube, method), *args)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def read(*args, **kwargs):
            started = None if kwargs else self._started.pop((method, args), None)
            return started.result() if started else getattr(self._kube, method)(*args, **kwargs)
        return read


def _read_ahead(reads: _ReadAhead, req: Request, ns: str) -> None:
    """Start the reads `_resolve` will make that need no answer first, in the order it makes them."""
    if req.target.kind is Kind.SERVICE:
        reads.start("service", ns, req.target.name)
    reads.start("service", DNS_NAMESPACE, DNS_SERVICE)
    reads.start("pods", DNS_NAMESPACE, DNS_SELECTOR)
    source_ns = (req.source.namespace or ns) if req.source else req.anonymous_in or ns
    involved = sorted({ns, source_ns})
    for n in involved:
        reads.start("list_objects", "NetworkPolicy", n)
    for n in involved:
        reads.start("get_metadata", "Namespace", None, n)
    reads.start("list_objects", "Pod", ns)
    reads.start("list_objects", "Pod", DNS_NAMESPACE, DNS_SELECTOR)
    if DNS_NAMESPACE not in involved:
        reads.start("get_metadata", "Namespace", None, DNS_NAMESPACE)
        reads.start("list_objects", "NetworkPolicy", DNS_NAMESPACE)
    if req.target.kind is Kind.SERVICE and not req.pods_only:
        reads.start("endpoint_slices", ns, req.target.name)


def _resolve(kube: Kube, req: Request, ns: str, kind: Future) -> Facts:
    service, backends = _target(kube, ns, req.target)
    if req.pods_only:
        service = None
    sp = _service_port(service, req.port)
    target_port, problems = _target_port(service, sp, backends, req.port)
    unread: list[Unread] = []
    source_pod, source_spec = _source(kube, req.source.namespace or ns, req.source) if req.source else (None, {})
    dns_service = _readable(unread, lambda: _optional(lambda: kube.service(DNS_NAMESPACE, DNS_SERVICE)),
                            f"service {DNS_SERVICE} in namespace {DNS_NAMESPACE}", Layer.DNS,
                            "the source's nameserver is not compared with the cluster DNS Service (ND-DNS-001)")
    dns_backends = _readable(unread, lambda: kube.pods(DNS_NAMESPACE, DNS_SELECTOR), f"pods in namespace {DNS_NAMESPACE}",
                             Layer.DNS, "the DNS pods are not asked one by one (ND-DNS-005) and the policies for "
                             "DNS are not evaluated")
    needed = [source_pod.node_name if source_pod else None, *node_reads.involved(backends, MAX_BACKEND_NODES),
              *node_reads.involved(dns_backends or (), MAX_DNS_NODES)]
    nodes = tuple(_readable(unread, lambda: node_reads.read(kube, req.nodes, needed, {p.node_name for p in backends}),
                            "nodes", Layer.NODE, "no probe on the other nodes (the cross-node layer) and the "
                            "source's node is left to the scheduler") or ())
    policy = _policy(kube, ns, source_pod, backends, target_port, sp.protocol if sp else "TCP",
                     unread if dns_backends is not None else None, req.anonymous_in)
    node = source_pod.node_name if source_pod else _default_node(nodes, backends)
    who = f"pod/{source_pod.name}" if source_pod else f"a probe in {req.anonymous_in}" if req.anonymous_in else "a probe"
    source_ns = source_pod.namespace if source_pod else req.anonymous_in or ns
    return Facts(
        namespace=ns, target=req.target, source=f"{who} on {node or 'any node'}", source_node=node,
        source_pod=source_pod.name if source_pod else None, source_namespace=source_ns,
        port=sp.port if sp else target_port, target_port=target_port, source_labels=policy.labels, impersonates=policy.impersonates,
        service=service, service_port=sp, backends=backends,
        selector_misses=_misses(kube, ns, service) if service and service.selector and not backends else (),
        slices=tuple(kube.endpoint_slices(ns, service.name)) if service else None, port_problems=problems,
        backend_ports=backend_ports(sp, backends),
        nodes=nodes, dns_service=dns_service, dns_backends=tuple(dns_backends or ()),
        policy=policy.flows, policy_error=policy.error, probe_icmp=policy.probe_icmp, dns_policy=policy.dns_flows,
        unread=tuple(unread),
        source_dns=source_dns(source_spec, source_ns, dns_service.cluster_ip if dns_service else None)
        if source_pod else None,
        cluster=kind.result(),
    )


def _optional(read):
    try:
        return read()
    except NotFound:
        return None


def _readable(unread: list[Unread], read: Callable[[], _T], what: str, layer: Layer, costs: str) -> _T | None:
    """read(), or None when the user may not (403): recorded in `unread` with what it costs."""
    try:
        return read()
    except Forbidden as exc:
        unread.append(Unread(what, exc.server_message, layer, costs))
        return None


def _missing(kube: Kube, ns: str, what: str) -> ClusterError:
    try:
        kube.get_namespace(ns)
    except NotFound:
        return ClusterError(f"namespace {ns!r} does not exist (looking for {what})",
                            hint="kubectl get namespaces")
    return ClusterError(f"{what} not found in namespace {ns!r}", hint=f"kubectl -n {ns} get svc,deploy,pods")


def _read(kube: Kube, ns: str, what: str, read):
    try:
        return read()
    except NotFound:
        raise _missing(kube, ns, what) from None


def _target(kube: Kube, ns: str, ref: Ref) -> tuple[Service | None, tuple[Pod, ...]]:
    if ref.kind is Kind.SERVICE:
        service = _read(kube, ns, f"service {ref.name!r}", lambda: kube.service(ns, ref.name))
        selected = kube.pods(ns, _selector_text(service)) if service.selector else _named_by_slices(kube, ns, service)
        return service, tuple(selected)
    if ref.kind is Kind.POD:
        pods = (_read(kube, ns, f"pod {ref.name!r}", lambda: kube.pod(ns, ref.name)),)
    else:
        deploy = _read(kube, ns, f"deployment {ref.name!r}", lambda: kube.deployment(ns, ref.name))
        pods = tuple(kube.pods(ns, str(deploy.selector)))
    return _service_for(kube, ns, pods), pods


def _named_by_slices(kube: Kube, ns: str, service: Service) -> list[Pod]:
    """A Service without a selector: the pods its hand-made EndpointSlices point at (targetRef)."""
    names = {e.pod_name for s in kube.endpoint_slices(ns, service.name) for e in s.endpoints if e.pod_name}
    return [p for p in kube.pods(ns) if p.name in names] if names else []


def _selector_text(service: Service) -> str:
    return ",".join(f"{k}={v}" for k, v in service.selector)


def _service_for(kube: Kube, ns: str, pods: tuple[Pod, ...]) -> Service | None:
    services = [Service.from_api(o) for o in kube.list_objects("Service", ns)]
    return next((s for s in services if s.selector and pods and from_match_labels(s.selector_map).matches(pods[0].label_map)), None)


def _service_port(service: Service | None, port: PortArg | None) -> ServicePort | None:
    """The Service port --port names (by number, name or PROTO/NUM), the first one without it."""
    if service is None:
        return None
    if port is None:
        return service.ports[0] if service.ports else None
    found = next((p for p in service.ports if port.matches(p.port, p.name, p.protocol)), None)
    if found is None:
        listed = ", ".join(_port_text(p.port, p.name, p.protocol) for p in service.ports)
        raise UsageError(f"--port {port.text}: Service {service.namespace}/{service.name} has no such port "
                         f"({'its ports: ' + listed if listed else 'it declares no port'})",
                         hint=f"name a port of the Service by number, name or PROTO/NUM, e.g. --port "
                              f"{service.ports[0].protocol}/{service.ports[0].port}" if service.ports else None)
    return found


def _port_text(number: int, name: str | None, protocol: str) -> str:
    return f"{protocol}/{number}" + (f" ({name})" if name else "")


def _pod_port(backends: tuple[Pod, ...], port: PortArg | None) -> int:
    """The container port of a target without a Service: --port by number (any, declared or not)
    or by a name some container declares; without --port, the first declared port."""
    declared = [c for p in backends for c in p.container_ports]
    if port is None:
        if not declared:
            raise UsageError("the target's pods declare no port: pass --port")
        return declared[0].port
    if port.number is not None:
        return port.number
    found = next((c.port for c in declared if port.matches(c.port, c.name, c.protocol)), None)
    if found is None:
        listed = ", ".join(sorted({_port_text(c.port, c.name, c.protocol) for c in declared})) or "none"
        raise UsageError(f"--port {port.text}: no container of the target's pods declares a port named "
                         f"{port.name!r} (declared: {listed})")
    return found


def _target_port(service, sp, backends, port) -> tuple[int | None, tuple[PortProblem, ...]]:
    """The backends' port for the Service port, and what disagrees. A container port matches by
    number or name *and* protocol (53/UDP and 53/TCP side by side are normal); a named targetPort
    may map to a different number on each pod (`backend_ports`), as during a migration."""
    if sp is None:
        return (_pod_port(backends, port) if service is None else None), ()
    if isinstance(sp.target_port, int) or str(sp.target_port).isdigit():
        number = int(sp.target_port)
        return number, tuple(_protocol_problem(sp, pod, number) for pod in backends
                             if _declares_only_other_protocol(pod, number, sp.protocol))[:1]
    resolved = backend_ports(sp, backends)
    if not resolved:
        declared = ", ".join(sorted({f"{c.name}={c.port}/{c.protocol}" for p in backends for c in p.container_ports
                                     if c.name})) or "none"
        return None, (PortProblem("named-port-unresolved",
                                  f"targetPort {sp.target_port!r} ({sp.protocol}); named ports: {declared}"),)
    missing = [p.name for p in backends if p.name not in dict(resolved)]
    problems = (PortProblem("named-port-unresolved", f"targetPort {sp.target_port!r} ({sp.protocol}) is not "
                            f"declared by pod(s) {', '.join(missing)}"),) if missing else ()
    return resolved[0][1], problems


def backend_ports(sp: ServicePort | None, backends) -> tuple[tuple[str, int], ...]:
    """(pod name, port) for each backend whose containers declare the Service port's targetPort,
    by name or number, with the Service port's protocol."""
    if sp is None:
        return ()
    found = []
    for pod in backends:
        number = next((c.port for c in pod.container_ports if c.protocol == sp.protocol
                       and (c.name == sp.target_port or str(c.port) == str(sp.target_port))), None)
        if number is None and str(sp.target_port).isdigit():
            number = int(sp.target_port)  # an undeclared numeric port is still served
        if number is not None:
            found.append((pod.name, number))
    return tuple(found)


def _declares_only_other_protocol(pod: Pod, number: int, protocol: str) -> bool:
    declared = {c.protocol for c in pod.container_ports if c.port == number}
    return bool(declared) and protocol not in declared


def _protocol_problem(sp: ServicePort, pod: Pod, number: int) -> PortProblem:
    declared = "/".join(sorted({c.protocol for c in pod.container_ports if c.port == number}))
    return PortProblem("protocol-mismatch", f"Service port {sp.port}/{sp.protocol}, pod {pod.name} declares "
                       f"container port {number} only as {declared}")


def _misses(kube: Kube, ns: str, service: Service) -> tuple[NearMiss, ...]:
    selector = from_match_labels(service.selector_map)
    pods = [Pod.from_api(o) for o in kube.list_metadata("Pod", ns)]  # labels are all it needs
    scored = [(len(selector.misses(p.label_map)), p) for p in pods]
    best = min((n for n, _ in scored), default=0)
    near = [p for n, p in scored if n == best and n < len(selector.requirements)][:3]
    return tuple(NearMiss(p.name, ", ".join(_has(r.key, p.label_map) for r in selector.misses(p.label_map)))
                 for p in near)


def _has(key: str, labels: dict) -> str:
    return f"{key}={labels[key]}" if key in labels else f"no label {key}"


def source_pod(kube: Kube, ns: str, ref: Ref) -> Pod:
    """The pod a --from names (a Deployment's first Running one): the smoke file's sources."""
    return _source(kube, ns, ref)[0]


def _source(kube: Kube, ns: str, ref: Ref) -> tuple[Pod, Mapping]:
    """The --from pod (a Deployment's first Running one) and its spec."""
    if ref.kind is Kind.POD:
        obj = _read(kube, ns, f"pod {ref.name!r}", lambda: kube.get_object("Pod", ns, ref.name))
        return Pod.from_api(obj), obj.get("spec") or {}
    deploy = _read(kube, ns, f"deployment {ref.name!r}", lambda: kube.deployment(ns, ref.name))
    running = [o for o in kube.list_objects("Pod", ns, str(deploy.selector))
               if (o.get("status") or {}).get("phase") == "Running"]
    if not running:
        raise ClusterError(f"deployment {ns}/{ref.name} has no Running pod to act as the source")
    return Pod.from_api(running[0]), running[0].get("spec") or {}


def source_dns(spec: Mapping, namespace: str, dns_ip: str | None, domain: str = CLUSTER_DOMAIN) -> SourceDns:
    """What the kubelet writes into the pod's /etc/resolv.conf, by its rules for dnsPolicy and
    dnsConfig (ClusterFirst also appends the node's search domains, which the API does not show)."""
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    config = spec.get("dnsConfig") or {}
    basis = f"dnsPolicy {policy}" + (" and dnsConfig" if config else "")
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        return SourceDns(None, f"{basis} on the host network: the node's own resolv.conf, which the API does not show")
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        if not dns_ip:
            return SourceDns(None, f"{basis}, but the cluster DNS Service is unknown")
        servers, search = [dns_ip], [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]
        ndots = CLUSTER_FIRST_NDOTS
    elif policy == "None":
        servers, search, ndots = [], [], RESOLVER_NDOTS
    else:
        return SourceDns(None, f"{basis}: the node's own resolv.conf, which the API does not show")
    servers += [s for s in config.get("nameservers") or [] if s not in servers]
    search += [s for s in config.get("searches") or [] if s not in search]
    for option in config.get("options") or []:
        if option.get("name") == "ndots" and str(option.get("value", "")).isdigit():
            ndots = int(option["value"])
    if not servers:
        return SourceDns(None, f"{basis} names no nameserver")
    return SourceDns(ResolvConf(tuple(servers), tuple(search), ndots), basis)


def _default_node(nodes, backends) -> str | None:
    """A node without a backend, else the first by name: the same node every run, whatever order
    the nodes were read in (the node sample reads the backends' nodes first)."""
    ready = sorted(n.name for n in nodes if probe_excluded(n) is None)
    hosting = {p.node_name for p in backends}
    return next((n for n in ready if n not in hosting), ready[0] if ready else None)


@dataclass(frozen=True)
class _PolicyView:
    labels: tuple[tuple[str, str], ...]  # what the probes carry
    impersonates: str | None
    flows: tuple[PolicyFlow, ...] | None
    error: str | None = None
    probe_icmp: bool = True
    dns_flows: tuple[PolicyFlow, ...] | None = None


def _policy(kube: Kube, ns: str, source: Pod | None, backends, port, protocol: str,
            unread: list[Unread] | None, anonymous_in: str | None = None) -> _PolicyView:
    """The labels the probes carry and the policies' verdicts for them (imports the engine only here).
    A policy selects pods of its own namespace: only the source's and the target's policies decide
    the flow, and kube-system's the DNS flows (`unread` None: the DNS pods could not be read, the
    DNS flows are not evaluated; else where to say that kube-system's policies could not)."""
    from netdoctor.policy.engine import decide, icmp_allowed
    from netdoctor.policy.model import Pod as PolicyPod, Protocol, world_from_objects

    own = tuple(source.labels) if source else PROBE_LABELS
    who = f"pod/{source.name}" if source else None
    namespace = source.namespace if source else anonymous_in or ns
    try:
        involved = sorted({ns, namespace})
        objects = [o for n in involved for o in kube.list_objects("NetworkPolicy", n)]
        objects += [kube.get_metadata("Namespace", None, n) for n in involved] + kube.list_objects("Pod", ns)
    except ClusterError as exc:
        return _PolicyView(own, who, None, exc.message)
    dns_objects = None if unread is None else _readable(
        unread, lambda: kube.list_objects("Pod", DNS_NAMESPACE, DNS_SELECTOR) + ([
            kube.get_metadata("Namespace", None, DNS_NAMESPACE), *kube.list_objects("NetworkPolicy", DNS_NAMESPACE)]
            if DNS_NAMESPACE not in (ns, namespace) else []),
        f"networkpolicies in namespace {DNS_NAMESPACE}", Layer.DNS, "the policies for DNS are not evaluated")
    dns = dns_objects is not None
    world = world_from_objects(objects + (dns_objects or []))
    targets = [world.pod(f"{ns}/{p.name}") for p in backends]
    targets = [t for t in targets if t is not None]
    dns_pods = [p for p in world.pods if p.namespace == DNS_NAMESPACE] if dns else []

    def view(labels, whom) -> _PolicyView:
        src = PolicyPod(namespace, "netdoctor-probe", dict(labels))
        peer = PolicyPod(namespace, "netdoctor-probe-peer", dict(labels))
        flows = tuple(PolicyFlow(t.name, decide(world, src, t, Protocol(protocol), port), icmp_allowed(world, src, t))
                      for t in targets) if port else ()
        dns_flows = tuple(PolicyFlow(d.name, decide(world, src, d, Protocol.UDP, 53)) for d in dns_pods) if dns else None
        return _PolicyView(tuple(labels), whom, flows, None, icmp_allowed(world, src, peer), dns_flows)

    mine = view(own, who)
    if source or anonymous_in or all(f.verdict.allowed for f in mine.flows):
        return mine
    for candidate in (p for p in world.pods if p.namespace == ns and p.origin == "Pod"):
        trial = view(tuple(sorted(candidate.labels.items())), f"pod/{candidate.name}")
        if trial.flows and all(f.verdict.allowed for f in trial.flows):
            return trial
    return mine
