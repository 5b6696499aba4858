"""The policy engine's world: typed Namespaces, Pods and NetworkPolicies built from API-shaped dicts.

`world_from_objects()` is the one entry point, used by `netdoctor policy` (objects read from files
or listed live) and by the check's policy layer. It reads Namespace, Pod, NetworkPolicy and the pod
templates of Deployment/StatefulSet/DaemonSet/ReplicaSet, ignores other kinds, and validates every
NetworkPolicy the way the API server would: a policy the server would reject is left out of the
world and reported as a PolicyProblem instead of being guessed at.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Iterable, Mapping, Union

from netdoctor.errors import InputFileError
from netdoctor.labels import Selector, SelectorError, from_label_selector

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
DEFAULT_NAMESPACE = "default"

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class Protocol(str, Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Direction(str, Enum):
    INGRESS = "Ingress"
    EGRESS = "Egress"


class ProblemKind(Enum):
    INVALID = "invalid"  # the API server would reject the policy: it is left out of the world
    IGNORED = "ignored"  # accepted, but part of it has no effect (likely a mistake)


@dataclass(frozen=True)
class PolicyProblem:
    policy: str  # "namespace/name"
    field: str  # where, e.g. "spec.ingress[0].ports[1].endPort"
    message: str
    kind: ProblemKind

    def __str__(self) -> str:
        verdict = "ignored: " if self.kind is ProblemKind.INVALID else ""
        return f"NetworkPolicy {self.policy}: {verdict}{self.field}: {self.message}"


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    declared: bool = True  # False: only referenced by a pod or policy, labels are the automatic one


@dataclass(frozen=True)
class ContainerPort:
    number: int
    protocol: Protocol
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    ips: tuple[IPAddress, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    origin: str = "Pod"  # "Pod", or the workload whose template it stands for, e.g. "Deployment/web"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def named_port(self, name: str) -> ContainerPort | None:
        return next((p for p in self.ports if p.name == name), None)


@dataclass(frozen=True)
class External:
    """An address that is not a pod (outside the cluster, a node): only ipBlock peers can match it."""

    ip: IPAddress

    @property
    def key(self) -> str:
        return str(self.ip)


Endpoint = Union[Pod, External]


@dataclass(frozen=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.cidr.version and ip in self.cidr and not any(ip in e for e in self.excepts)

    def __str__(self) -> str:
        return str(self.cidr) + (f" except {', '.join(map(str, self.excepts))}" if self.excepts else "")


@dataclass(frozen=True)
class Peer:
    """One entry of `from`/`to`: pod and/or namespace selectors (ANDed), or an ipBlock."""

    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None

    def __str__(self) -> str:
        if self.ip_block:
            return f"ipBlock {self.ip_block}"
        parts = []
        if self.namespace_selector is not None:
            parts.append(f"namespaces [{self.namespace_selector}]")
        if self.pod_selector is not None:
            parts.append(f"pods [{self.pod_selector}]")
        return " and ".join(parts)


@dataclass(frozen=True)
class PortSpec:
    protocol: Protocol = Protocol.TCP
    port: int | str | None = None  # None: every port of the protocol; str: a named containerPort
    end_port: int | None = None

    @property
    def port_text(self) -> str:
        """"80", "8000-8080", "http" or "any"."""
        if self.port is None:
            return "any"
        return f"{self.port}-{self.end_port}" if self.end_port is not None else str(self.port)

    def __str__(self) -> str:
        return f"{self.protocol.value}/{self.port_text}"


@dataclass(frozen=True)
class Rule:
    peers: tuple[Peer, ...] = ()  # empty: every peer
    ports: tuple[PortSpec, ...] = ()  # empty: every port


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    pod_selector: Selector
    types: frozenset[Direction]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress

    def selects(self, pod: Pod, direction: Direction) -> bool:
        """Whether this policy isolates `pod` in `direction` (never a pod of another namespace)."""
        return direction in self.types and pod.namespace == self.namespace and self.pod_selector.matches(pod.labels)


@dataclass(frozen=True)
class World:
    namespaces: Mapping[str, Namespace]
    pods: tuple[Pod, ...]
    policies: tuple[Policy, ...]  # only valid ones
    problems: tuple[PolicyProblem, ...] = ()

    def pod(self, key: str) -> Pod | None:
        """The pod named "namespace/name", or None."""
        return next((p for p in self.pods if p.key == key), None)

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        namespace = self.namespaces.get(name)
        return namespace.labels if namespace else {NAMESPACE_NAME_LABEL: name}

    def selecting(self, pod: Pod, direction: Direction) -> tuple[Policy, ...]:
        return tuple(p for p in self.policies if p.selects(pod, direction))


class _Invalid(Exception):
    """A policy field the API server would reject; becomes a PolicyProblem."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def world_from_objects(objects: Iterable[Mapping]) -> World:
    """A World from API-shaped dicts (from files or the API server); unknown kinds are ignored."""
    objects = list(objects)
    namespaces = {ns.name: ns for ns in (_namespace(o) for o in objects if o.get("kind") == "Namespace")}
    pods = _pods(objects)
    policies, problems = [], []
    for obj in (o for o in objects if o.get("kind") == "NetworkPolicy"):
        policy, found = _policy(obj)
        problems.extend(found)
        if policy:
            policies.append(policy)
    for name in {p.namespace for p in pods} | {p.namespace for p in policies}:
        namespaces.setdefault(name, Namespace(name, MappingProxyType({NAMESPACE_NAME_LABEL: name}), declared=False))
    return World(MappingProxyType(namespaces), tuple(sorted(pods, key=lambda p: p.key)), tuple(policies), tuple(problems))


def _metadata(obj: Mapping) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    if not meta.get("name"):
        raise InputFileError(f"a {obj.get('kind')} has no metadata.name")
    return str(meta.get("namespace") or DEFAULT_NAMESPACE), str(meta["name"])


def _labels(meta: Mapping | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((meta or {}).get("labels") or {}).items()}


def _namespace(obj: Mapping) -> Namespace:
    _, name = _metadata(obj)
    labels = _labels(obj.get("metadata")) | {NAMESPACE_NAME_LABEL: name}  # as the API server does
    return Namespace(name, MappingProxyType(labels))


def _pods(objects: list[Mapping]) -> list[Pod]:
    pods = [_pod(o) for o in objects if o.get("kind") == "Pod" and not _finished(o)]
    taken = {p.key for p in pods}
    for obj in (o for o in objects if o.get("kind") in WORKLOAD_KINDS):
        pod = _template_pod(obj, taken)
        taken.add(pod.key)
        pods.append(pod)
    return pods


def _finished(obj: Mapping) -> bool:
    return (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _pod(obj: Mapping) -> Pod:
    namespace, name = _metadata(obj)
    status = obj.get("status") or {}
    addresses = [a.get("ip") for a in status.get("podIPs") or []] or [status.get("podIP")]
    try:
        ips = tuple(ipaddress.ip_address(a) for a in addresses if a)
    except ValueError as exc:
        raise InputFileError(f"Pod {namespace}/{name}: {exc}") from None
    labels = MappingProxyType(_labels(obj.get("metadata")))
    return Pod(namespace, name, labels, ips, _container_ports(obj.get("spec") or {}, f"Pod {namespace}/{name}"))


def _template_pod(obj: Mapping, taken: set[str]) -> Pod:
    """A workload's pod template as one pod named after the workload: replicas share labels and ports."""
    namespace, workload = _metadata(obj)
    template = (obj.get("spec") or {}).get("template") or {}
    name = f"{workload}.{obj['kind'].lower()}" if f"{namespace}/{workload}" in taken else workload
    labels = MappingProxyType(_labels(template.get("metadata")))
    ports = _container_ports(template.get("spec") or {}, f"{obj['kind']} {namespace}/{workload}")
    return Pod(namespace, name, labels, (), ports, origin=f"{obj['kind']}/{workload}")


def _container_ports(spec: Mapping, owner: str) -> tuple[ContainerPort, ...]:
    ports = []
    for container in spec.get("containers") or []:
        for port in container.get("ports") or []:
            try:
                protocol = Protocol(port.get("protocol") or "TCP")
                ports.append(ContainerPort(int(port["containerPort"]), protocol, port.get("name")))
            except (KeyError, TypeError, ValueError):
                raise InputFileError(f"{owner}: invalid containerPort {port!r}") from None
    return tuple(ports)


# --- NetworkPolicy parsing and validation (as the API server validates) ---------------------------

_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _policy(obj: Mapping) -> tuple[Policy | None, list[PolicyProblem]]:
    namespace, name = _metadata(obj)
    key = f"{namespace}/{name}"
    spec = obj.get("spec") or {}
    try:
        types = _policy_types(spec)
        policy = Policy(
            namespace,
            name,
            _selector(spec.get("podSelector") or {}, "spec.podSelector"),
            types,
            _rules(spec, "ingress", "from"),
            _rules(spec, "egress", "to"),
        )
    except _Invalid as exc:
        return None, [PolicyProblem(key, exc.field, exc.message, ProblemKind.INVALID)]
    return policy, _ignored_rules(key, spec, types)


def _policy_types(spec: Mapping) -> frozenset[Direction]:
    given = spec.get("policyTypes")
    if not given:  # the API server's default: Ingress always, Egress when egress rules exist
        return frozenset({Direction.INGRESS} | ({Direction.EGRESS} if spec.get("egress") else set()))
    if not isinstance(given, list) or len(given) > 2 or len(set(given)) != len(given):
        raise _Invalid("spec.policyTypes", "must list Ingress and/or Egress, each at most once")
    try:
        return frozenset(Direction(t) for t in given)
    except ValueError:
        raise _Invalid("spec.policyTypes", f"unsupported value in {given!r} (Ingress, Egress)") from None


def _ignored_rules(key: str, spec: Mapping, types: frozenset[Direction]) -> list[PolicyProblem]:
    return [
        PolicyProblem(key, f"spec.{d.value.lower()}", f"rules are ignored: policyTypes lacks {d.value}", ProblemKind.IGNORED)
        for d in Direction
        if spec.get(d.value.lower()) and d not in types
    ]


def _rules(spec: Mapping, section: str, peers_field: str) -> tuple[Rule, ...]:
    rules = spec.get(section)
    if rules is None:
        return ()
    if not isinstance(rules, list):
        raise _Invalid(f"spec.{section}", "must be a list of rules")
    return tuple(_rule(r or {}, f"spec.{section}[{i}]", peers_field) for i, r in enumerate(rules))


def _rule(rule: Mapping, where: str, peers_field: str) -> Rule:
    peers = rule.get(peers_field) or []
    ports = rule.get("ports") or []
    if not isinstance(peers, list) or not isinstance(ports, list):
        raise _Invalid(where, f"{peers_field} and ports must be lists")
    return Rule(
        tuple(_peer(p or {}, f"{where}.{peers_field}[{i}]") for i, p in enumerate(peers)),
        tuple(_port(p or {}, f"{where}.ports[{i}]") for i, p in enumerate(ports)),
    )


def _peer(peer: Mapping, where: str) -> Peer:
    has_selector = "podSelector" in peer or "namespaceSelector" in peer
    if "ipBlock" in peer:
        if has_selector:
            raise _Invalid(where, "may not combine ipBlock with podSelector or namespaceSelector")
        return Peer(ip_block=_ip_block(peer["ipBlock"] or {}, f"{where}.ipBlock"))
    if not has_selector:
        raise _Invalid(where, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    return Peer(
        _optional_selector(peer, "podSelector", where),
        _optional_selector(peer, "namespaceSelector", where),
    )


def _optional_selector(peer: Mapping, field: str, where: str) -> Selector | None:
    return _selector(peer[field] or {}, f"{where}.{field}") if field in peer else None


def _selector(spec: Mapping, where: str) -> Selector:
    try:
        return from_label_selector(spec)
    except SelectorError as exc:
        raise _Invalid(where, str(exc)) from None


def _ip_block(block: Mapping, where: str) -> IPBlock:
    cidr = _network(block.get("cidr"), f"{where}.cidr")
    excepts = tuple(_network(e, f"{where}.except[{i}]") for i, e in enumerate(block.get("except") or []))
    for i, e in enumerate(excepts):
        if e.version != cidr.version or not e.subnet_of(cidr) or e.prefixlen <= cidr.prefixlen:
            raise _Invalid(f"{where}.except[{i}]", f"{e} must be a strict subset of {cidr}")
    return IPBlock(cidr, excepts)


def _network(text, where: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise _Invalid(where, f"{text!r} is not a CIDR") from None


def _port(spec: Mapping, where: str) -> PortSpec:
    try:
        protocol = Protocol(spec.get("protocol") or "TCP")
    except ValueError:
        raise _Invalid(f"{where}.protocol", f"unsupported protocol {spec.get('protocol')!r} (TCP, UDP, SCTP)") from None
    port, end_port = spec.get("port"), spec.get("endPort")
    if isinstance(port, str):
        _check_port_name(port, f"{where}.port")
    elif port is not None:
        _check_port_number(port, f"{where}.port")
    if end_port is not None:
        _check_end_port(port, end_port, f"{where}.endPort")
    return PortSpec(protocol, port, end_port)


def _check_port_name(name: str, where: str) -> None:
    if len(name) > 15 or not _PORT_NAME.match(name) or "--" in name or not re.search("[a-z]", name):
        raise _Invalid(where, f"{name!r} is neither a port number nor a valid port name")


def _check_port_number(port, where: str) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise _Invalid(where, f"{port!r} is not a port number between 1 and 65535")


def _check_end_port(port, end_port, where: str) -> None:
    if isinstance(port, str):
        raise _Invalid(where, f"endPort may not be used with a named port ({port!r})")
    if port is None:
        raise _Invalid(where, "endPort needs a numeric port")
    _check_port_number(end_port, where)
    if end_port < port:
        raise _Invalid(where, f"endPort {end_port} is below port {port}")
