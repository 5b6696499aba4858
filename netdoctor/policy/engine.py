"""Pure NetworkPolicy decisions for one flow, with the reasons (no I/O).

`decide()` is the entry point of `netdoctor policy explain` and of the check's policy layer: it
tells whether egress at the source and ingress at the destination allow a (protocol, port) flow,
which rules allow it, which policies isolate each end, and for a denial the nearest miss.
`peer_mismatches()` and `port_mismatches()` carry the API semantics of one peer and one port entry;
policy/matrix.py reuses them so both paths agree.

A flow is allowed when both directions are: a direction no policy selects (NOT_ISOLATED) allows
everything; a selected direction allows what the union of the selecting policies' rules allows.
An end that is not a pod (External) has no policies of its own and only matches ipBlock peers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from netdoctor.labels import Requirement, Selector
from netdoctor.policy.model import Direction, Endpoint, External, IPBlock, Peer, Pod, PortSpec, Protocol, Rule, World


class DirectionState(Enum):
    NOT_ISOLATED = "not-isolated"  # no policy selects the pod for this direction: all allowed
    ALLOWED = "allowed"  # isolated, and at least one rule allows the flow
    DENIED = "denied"  # isolated, and no rule allows the flow
    NOT_A_POD = "not-a-pod"  # this end is an external address: NetworkPolicy does not apply there


class MissKind(Enum):
    LABEL = "label"  # a podSelector requirement the pod's labels fail
    NAMESPACE = "namespace"  # the wrong namespace, or a namespaceSelector requirement it fails
    IP = "ip"  # an address outside the ipBlock (or in an except), or no address known
    NOT_A_POD = "not-a-pod"  # a pod/namespace selector peer against an external address
    PORT = "port"
    PROTOCOL = "protocol"


@dataclass(frozen=True)
class Mismatch:
    kind: MissKind
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.kind.value}: wants {self.expected}, has {self.actual}"


@dataclass(frozen=True)
class RuleRef:
    policy: str  # "namespace/name"
    direction: Direction
    index: int  # position in spec.ingress / spec.egress

    def __str__(self) -> str:
        return f"{self.policy} spec.{self.direction.value.lower()}[{self.index}]"


@dataclass(frozen=True)
class NearestMiss:
    """The rule with the fewest failed conditions, and those conditions."""

    rule: RuleRef
    mismatches: tuple[Mismatch, ...]


@dataclass(frozen=True)
class DirectionVerdict:
    direction: Direction
    state: DirectionState
    subject: str  # the end whose policies decide: the source for egress, the destination for ingress
    allowing: tuple[RuleRef, ...] = ()
    isolating: tuple[str, ...] = ()  # the policies selecting the subject for this direction
    nearest_miss: NearestMiss | None = None  # only for DENIED, None when no isolating policy has a rule

    @property
    def allowed(self) -> bool:
        return self.state is not DirectionState.DENIED


@dataclass(frozen=True)
class FlowVerdict:
    source: Endpoint
    destination: Endpoint
    protocol: Protocol
    port: int
    egress: DirectionVerdict
    ingress: DirectionVerdict

    @property
    def allowed(self) -> bool:
        return self.egress.allowed and self.ingress.allowed


def decide(world: World, source: Endpoint, destination: Endpoint, protocol: Protocol, port: int) -> FlowVerdict:
    """Whether `source` may open a `protocol`/`port` flow to `destination`, and why."""
    egress = _direction(world, Direction.EGRESS, source, source, destination, protocol, port)
    ingress = _direction(world, Direction.INGRESS, destination, source, destination, protocol, port)
    return FlowVerdict(source, destination, protocol, port, egress, ingress)


def _direction(
    world: World, direction: Direction, subject: Endpoint, source: Endpoint, destination: Endpoint, protocol: Protocol, port: int
) -> DirectionVerdict:
    if isinstance(subject, External):
        return DirectionVerdict(direction, DirectionState.NOT_A_POD, subject.key)
    policies = world.selecting(subject, direction)
    if not policies:
        return DirectionVerdict(direction, DirectionState.NOT_ISOLATED, subject.key)
    other = destination if direction is Direction.EGRESS else source
    misses = [
        (RuleRef(policy.key, direction, i), rule_mismatches(world, policy.namespace, rule, other, destination, protocol, port))
        for policy in policies
        for i, rule in enumerate(policy.rules(direction))
    ]
    isolating = tuple(p.key for p in policies)
    allowing = tuple(ref for ref, mismatches in misses if not mismatches)
    if allowing:
        return DirectionVerdict(direction, DirectionState.ALLOWED, subject.key, allowing, isolating)
    nearest = min(misses, key=lambda miss: len(miss[1]), default=None)
    return DirectionVerdict(
        direction, DirectionState.DENIED, subject.key, (), isolating, NearestMiss(*nearest) if nearest else None
    )


def icmp_allowed(world: World, source: Endpoint, destination: Endpoint) -> bool:
    """Whether ping may pass: ICMP has no port, so in each isolated direction only a rule
    without `ports` whose peers match the other end admits it."""
    for direction, subject, other in ((Direction.EGRESS, source, destination),
                                      (Direction.INGRESS, destination, source)):
        if isinstance(subject, External):
            continue
        policies = world.selecting(subject, direction)
        if policies and not any(
            not rule.ports and not min((peer_mismatches(world, policy.namespace, p, other) for p in rule.peers),
                                       key=len, default=())
            for policy in policies for rule in policy.rules(direction)
        ):
            return False
    return True


def rule_mismatches(
    world: World, namespace: str, rule: Rule, peer: Endpoint, destination: Endpoint, protocol: Protocol, port: int
) -> tuple[Mismatch, ...]:
    """What keeps `rule` (of a policy in `namespace`) from allowing the flow; empty when it allows.

    `peer` is the other end (the destination for egress, the source for ingress); named ports are
    always resolved on `destination`. The closest peer entry and port entry are the ones reported.
    """
    peers = min((peer_mismatches(world, namespace, p, peer) for p in rule.peers), key=len, default=())
    ports = min((port_mismatches(s, protocol, port, destination) for s in rule.ports), key=len, default=())
    return peers + ports


def peer_mismatches(world: World, namespace: str, peer: Peer, endpoint: Endpoint) -> tuple[Mismatch, ...]:
    """Why `peer` (in a policy of `namespace`) does not match `endpoint`; empty when it matches."""
    if peer.ip_block is not None:
        return _ip_mismatches(peer.ip_block, endpoint)
    if isinstance(endpoint, External):
        return (Mismatch(MissKind.NOT_A_POD, str(peer), f"{endpoint.ip}, not a pod"),)
    ns_misses = _namespace_mismatches(world, namespace, peer.namespace_selector, endpoint.namespace)
    return ns_misses + _label_mismatches(peer.pod_selector, endpoint.labels)


def _ip_mismatches(block: IPBlock, endpoint: Endpoint) -> tuple[Mismatch, ...]:
    ips = endpoint.ips if isinstance(endpoint, Pod) else (endpoint.ip,)
    if not ips:
        return (Mismatch(MissKind.IP, f"an address in {block}", f"no known IP for {endpoint.key} (pods from files have none)"),)
    if any(block.contains(ip) for ip in ips):
        return ()
    return (Mismatch(MissKind.IP, f"an address in {block}", ", ".join(map(str, ips))),)


def _namespace_mismatches(world: World, namespace: str, selector: Selector | None, actual: str) -> tuple[Mismatch, ...]:
    if selector is None:  # podSelector alone: the policy's own namespace
        if actual == namespace:
            return ()
        return (Mismatch(MissKind.NAMESPACE, f"namespace {namespace} (podSelector without namespaceSelector)", f"namespace {actual}"),)
    labels = world.namespace_labels(actual)
    return tuple(
        Mismatch(MissKind.NAMESPACE, f"namespace label {r}", f"namespace {actual} with {_actual(r, labels)}")
        for r in selector.misses(labels)
    )


def _label_mismatches(selector: Selector | None, labels: Mapping[str, str]) -> tuple[Mismatch, ...]:
    if selector is None:
        return ()
    return tuple(Mismatch(MissKind.LABEL, f"pod label {r}", _actual(r, labels)) for r in selector.misses(labels))


def _actual(requirement: Requirement, labels: Mapping[str, str]) -> str:
    key = requirement.key
    return f"{key}={labels[key]}" if key in labels else f"no label {key}"


def port_mismatches(spec: PortSpec, protocol: Protocol, port: int, destination: Endpoint) -> tuple[Mismatch, ...]:
    """Why the `ports` entry `spec` does not match the flow; named ports resolve on `destination`."""
    misses = []
    if spec.protocol is not protocol:
        misses.append(Mismatch(MissKind.PROTOCOL, spec.protocol.value, protocol.value))
    if isinstance(spec.port, str):
        misses.extend(_named_port_mismatches(spec, port, destination))
    elif spec.port is not None and not spec.port <= port <= (spec.end_port or spec.port):
        misses.append(Mismatch(MissKind.PORT, f"port {spec.port_text}", f"port {port}"))
    return tuple(misses)


def _named_port_mismatches(spec: PortSpec, port: int, destination: Endpoint) -> tuple[Mismatch, ...]:
    wanted = f"named port {spec.port}"
    if isinstance(destination, External):
        return (Mismatch(MissKind.PORT, wanted, f"{destination.key}, not a pod with named ports"),)
    declared = destination.named_port(spec.port)
    if declared is None:
        names = ", ".join(sorted(p.name for p in destination.ports if p.name)) or "none"
        return (Mismatch(MissKind.PORT, wanted, f"{destination.key} names no such port (its names: {names})"),)
    misses = []
    if declared.protocol is not spec.protocol:
        misses.append(Mismatch(MissKind.PROTOCOL, f"{spec.protocol.value} for {wanted}", f"{spec.port} is {declared.protocol.value} on {destination.key}"))
    if declared.number != port:
        misses.append(Mismatch(MissKind.PORT, f"{wanted} (= {declared.number} on {destination.key})", f"port {port}"))
    return tuple(misses)
