"""The resolve stage: read the API objects behind a check and build its Facts.

Called by check.command with a connected Kube. Turns "unknown Service" into one line (exit 3) that says
whether the namespace itself is missing (the API server does not). Picks the source: --from, or a
probe on a node other than a backend's, impersonating an allowed pod when the backends are
ingress-isolated. Evaluates the NetworkPolicies for source → each backend.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdoctor.check import cluster_kind
from netdoctor.errors import ClusterError, UsageError
from netdoctor.cluster.kube import Kube, NotFound
from netdoctor.labels import from_match_labels
from netdoctor.model import Facts, Kind, NearMiss, PolicyFlow, PortProblem, Ref
from netdoctor.cluster.objects import Pod, Service, ServicePort

DNS_NAMESPACE, DNS_SERVICE, DNS_SELECTOR = "kube-system", "kube-dns", "k8s-app=kube-dns"
PROBE_LABELS = (("app.kubernetes.io/managed-by", "netdoctor"),)


@dataclass(frozen=True)
class Request:
    target: Ref
    namespace: str | None
    source: Ref | None
    port: str | None  # number or name


def resolve(kube: Kube, req: Request) -> Facts:
    ns = req.namespace or kube.namespace
    service, backends = _target(kube, ns, req.target)
    sp = _service_port(service, req.port)
    target_port, problems = _target_port(service, sp, backends, req.port)
    nodes = tuple(kube.nodes())
    source_pod = _source(kube, ns, req.source) if req.source else None
    policy = _policy(kube, ns, source_pod, backends, target_port, sp.protocol if sp else "TCP")
    node = source_pod.node_name if source_pod else _default_node(nodes, backends)
    who = f"pod/{source_pod.name}" if source_pod else "a probe"
    return Facts(
        namespace=ns, target=req.target, source=f"{who} on {node or 'any node'}", source_node=node,
        source_pod=source_pod.name if source_pod else None,
        source_namespace=source_pod.namespace if source_pod else ns,
        port=sp.port if sp else target_port, target_port=target_port, source_labels=policy.labels, impersonates=policy.impersonates,
        service=service, service_port=sp, backends=backends,
        selector_misses=_misses(kube, ns, service) if service and service.selector and not backends else (),
        slices=tuple(kube.endpoint_slices(ns, service.name)) if service else None, port_problems=problems,
        backend_ports=backend_ports(sp, backends),
        nodes=nodes, dns_service=_optional(lambda: kube.service(DNS_NAMESPACE, DNS_SERVICE)),
        dns_backends=tuple(_optional(lambda: kube.pods(DNS_NAMESPACE, DNS_SELECTOR)) or ()),
        policy=policy.flows, policy_error=policy.error, probe_icmp=policy.probe_icmp, dns_policy=policy.dns_flows,
        cluster=cluster_kind.read(kube),
    )


def _optional(read):
    try:
        return read()
    except NotFound:
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
        selected = kube.pods(ns, _selector_text(service)) if service.selector else []
        return service, tuple(selected)
    if ref.kind is Kind.POD:
        pods = (_read(kube, ns, f"pod {ref.name!r}", lambda: kube.pod(ns, ref.name)),)
    else:
        deploy = _read(kube, ns, f"deployment {ref.name!r}", lambda: kube.deployment(ns, ref.name))
        pods = tuple(kube.pods(ns, str(deploy.selector)))
    return _service_for(kube, ns, pods), pods


def _selector_text(service: Service) -> str:
    return ",".join(f"{k}={v}" for k, v in service.selector)


def _service_for(kube: Kube, ns: str, pods: tuple[Pod, ...]) -> Service | None:
    services = [Service.from_api(o) for o in kube.list_objects("Service", ns)]
    return next((s for s in services if s.selector and pods and from_match_labels(s.selector_map).matches(pods[0].label_map)), None)


def _service_port(service: Service | None, port: str | None) -> ServicePort | None:
    if service is None or not service.ports:
        return None
    if port is None:
        return service.ports[0]
    return next((p for p in service.ports if str(p.port) == port or p.name == port), None)


def _target_port(service, sp, backends, port) -> tuple[int | None, tuple[PortProblem, ...]]:
    """The backends' port for the Service port, and what disagrees. A container port matches by
    number or name *and* protocol (53/UDP and 53/TCP side by side are normal); a named targetPort
    may map to a different number on each pod (`backend_ports`), as during a migration."""
    if sp is None:
        if service is None and port is None:
            ports = [c.port for p in backends for c in p.container_ports]
            if not ports:
                raise UsageError("the target's pods declare no port: pass --port")
            return ports[0], ()
        return (int(port) if port and port.isdigit() else None), ()
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
    scored = [(len(selector.misses(p.label_map)), p) for p in kube.pods(ns)]
    best = min((n for n, _ in scored), default=0)
    near = [p for n, p in scored if n == best and n < len(selector.requirements)][:3]
    return tuple(NearMiss(p.name, ", ".join(_has(r.key, p.label_map) for r in selector.misses(p.label_map)))
                 for p in near)


def _has(key: str, labels: dict) -> str:
    return f"{key}={labels[key]}" if key in labels else f"no label {key}"


def _source(kube: Kube, ns: str, ref: Ref) -> Pod:
    if ref.kind is Kind.POD:
        return _read(kube, ns, f"pod {ref.name!r}", lambda: kube.pod(ns, ref.name))
    deploy = _read(kube, ns, f"deployment {ref.name!r}", lambda: kube.deployment(ns, ref.name))
    running = [p for p in kube.pods(ns, str(deploy.selector)) if p.phase == "Running"]
    if not running:
        raise ClusterError(f"deployment {ref.name!r} has no Running pod to act as the source")
    return running[0]


def _default_node(nodes, backends) -> str | None:
    ready = [n.name for n in nodes if n.ready]
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


def _policy(kube: Kube, ns: str, source: Pod | None, backends, port, protocol: str) -> _PolicyView:
    """The labels the probes carry and the policies' verdicts for them (imports the engine only here)."""
    from netdoctor.policy.engine import decide, icmp_allowed
    from netdoctor.policy.model import Pod as PolicyPod, Protocol, world_from_objects

    own = tuple(source.labels) if source else PROBE_LABELS
    who = f"pod/{source.name}" if source else None
    namespace = source.namespace if source else ns
    try:
        objects = kube.list_objects("NetworkPolicy", None) + kube.list_objects("Namespace") + kube.list_objects("Pod", ns)
        objects += kube.list_objects("Pod", DNS_NAMESPACE, DNS_SELECTOR)
        world = world_from_objects(objects)
    except ClusterError as exc:
        return _PolicyView(own, who, None, exc.message)
    targets = [world.pod(f"{ns}/{p.name}") for p in backends]
    targets = [t for t in targets if t is not None]
    dns_pods = [p for p in world.pods if p.namespace == DNS_NAMESPACE]

    def view(labels, whom) -> _PolicyView:
        src = PolicyPod(namespace, "netdoctor-probe", dict(labels))
        peer = PolicyPod(namespace, "netdoctor-probe-peer", dict(labels))
        flows = tuple(PolicyFlow(t.name, decide(world, src, t, Protocol(protocol), port), icmp_allowed(world, src, t))
                      for t in targets) if port else ()
        dns = tuple(PolicyFlow(d.name, decide(world, src, d, Protocol.UDP, 53)) for d in dns_pods)
        return _PolicyView(tuple(labels), whom, flows, None, icmp_allowed(world, src, peer), dns)

    mine = view(own, who)
    if source or all(f.verdict.allowed for f in mine.flows):
        return mine
    for candidate in (p for p in world.pods if p.namespace == ns and p.origin == "Pod"):
        trial = view(tuple(sorted(candidate.labels.items())), f"pod/{candidate.name}")
        if trial.flows and all(f.verdict.allowed for f in trial.flows):
            return trial
    return mine
