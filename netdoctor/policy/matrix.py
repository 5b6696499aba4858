"""The who-may-talk-to-whom matrix, computed per group of equivalent pods.

Called by `netdoctor policy matrix` and benchmarks/policy_matrix.py. Pods sharing namespace,
labels, container ports and ipBlock memberships are indistinguishable to every policy, so they
form one group; each peer and each named-port entry is evaluated once per group, giving a bitmask
over groups (bit i = group i), and a flow's verdict is a bit test. Cells for individual pods are
expanded lazily from the group pairs. The API semantics stay in engine.peer_mismatches and
engine.port_mismatches; property tests pin this module to engine.decide cell by cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from netdoctor.errors import UsageError
from netdoctor.policy.engine import DirectionState, peer_mismatches, port_mismatches
from netdoctor.policy.model import Direction, IPBlock, Pod, Policy, PolicyProblem, Protocol, Rule, World

_PORT_ARG = re.compile(r"^(?:(?P<protocol>[A-Za-z]+)/)?(?P<port>[A-Za-z0-9-]+)$")


@dataclass(frozen=True)
class PortQuery:
    """A `--port` argument: PROTO/PORT, PORT (TCP), or PROTO/NAME for a named containerPort."""

    protocol: Protocol
    port: int | str

    def resolve(self, destination: Pod) -> int | None:
        """The port number on `destination`, or None when it declares no such named port."""
        if isinstance(self.port, int):
            return self.port
        declared = destination.named_port(self.port)
        return declared.number if declared and declared.protocol is self.protocol else None

    def __str__(self) -> str:
        return f"{self.protocol.value}/{self.port}"


def parse_port(text: str) -> PortQuery:
    m = _PORT_ARG.match(text.strip())
    protocol = (m["protocol"] or "TCP").upper() if m else ""
    if not m or protocol not in Protocol.__members__:
        raise UsageError(f"invalid port {text!r}: expected PROTO/PORT such as TCP/80, UDP/53 or TCP/http")
    port = m["port"]
    if not port.isdigit():
        return PortQuery(Protocol(protocol), port)
    if not 1 <= int(port) <= 65535:
        raise UsageError(f"invalid port {text!r}: port numbers run from 1 to 65535")
    return PortQuery(Protocol(protocol), int(port))


@dataclass(frozen=True)
class Outcome:
    """One (protocol, port) between two groups."""

    protocol: Protocol
    port: int
    egress: DirectionState
    ingress: DirectionState

    @property
    def allowed(self) -> bool:
        return DirectionState.DENIED not in (self.egress, self.ingress)


@dataclass(frozen=True)
class Cell:
    source: Pod
    destination: Pod
    outcome: Outcome


@dataclass(frozen=True)
class Matrix:
    pods: tuple[Pod, ...]  # sorted by namespace/name
    groups: tuple[int, ...]  # the group of each pod, aligned with `pods`
    outcomes: Mapping[tuple[int, int], tuple[Outcome, ...]]  # (source group, destination group)
    problems: tuple[PolicyProblem, ...] = ()

    def between(self, source: int, destination: int) -> tuple[Outcome, ...]:
        """Outcomes from pod `source` to pod `destination` (indices into `pods`)."""
        return self.outcomes[(self.groups[source], self.groups[destination])]

    def cells(self) -> Iterator[Cell]:
        for s, source in enumerate(self.pods):
            for d, destination in enumerate(self.pods):
                for outcome in self.between(s, d):
                    yield Cell(source, destination, outcome)

    def totals(self) -> tuple[int, int]:
        """(allowed cells, all cells), counted per group pair."""
        sizes: dict[int, int] = {}
        for g in self.groups:
            sizes[g] = sizes.get(g, 0) + 1
        allowed = total = 0
        for (s, d), outcomes in self.outcomes.items():
            pairs = sizes[s] * sizes[d]
            total += pairs * len(outcomes)
            allowed += pairs * sum(o.allowed for o in outcomes)
        return allowed, total


def compute_matrix(world: World, pods: Sequence[Pod] | None = None, ports: Sequence[PortQuery] | None = None) -> Matrix:
    """Every (source, destination, port) among `pods` (default: all); ports default to each destination's containerPorts."""
    pods = tuple(sorted(world.pods if pods is None else pods, key=lambda p: p.key))
    groups, representatives = _group(world, pods)
    index = _Index(world, representatives)
    outcomes = {}
    for d, destination in enumerate(representatives):
        columns = [index.column(d, protocol, port) for protocol, port in _flows(destination, ports)]
        for s in range(len(representatives)):
            outcomes[(s, d)] = tuple(column[s] for column in columns)
    return Matrix(pods, groups, outcomes, world.problems)


def _flows(destination: Pod, queries: Sequence[PortQuery] | None) -> list[tuple[Protocol, int]]:
    if queries is None:
        wanted = sorted({(p.protocol, p.number) for p in destination.ports}, key=lambda f: (f[1], f[0].value))
        return wanted
    flows = []
    for query in queries:
        number = query.resolve(destination)
        if number is not None and (query.protocol, number) not in flows:
            flows.append((query.protocol, number))
    return flows


def _group(world: World, pods: tuple[Pod, ...]) -> tuple[tuple[int, ...], list[Pod]]:
    """Group pods no policy can tell apart: labels no pod selector mentions do not count."""
    blocks = _ip_blocks(world.policies)
    mentioned = _selector_keys(world.policies)
    keys: dict[tuple, int] = {}
    representatives: list[Pod] = []
    groups = []
    for pod in pods:
        signature = frozenset(i for i, b in enumerate(blocks) if any(b.contains(ip) for ip in pod.ips))
        labels = frozenset(item for item in pod.labels.items() if item[0] in mentioned)
        key = (pod.namespace, labels, pod.ports, signature)
        if key not in keys:
            keys[key] = len(representatives)
            representatives.append(pod)
        groups.append(keys[key])
    return tuple(groups), representatives


def _selector_keys(policies: Sequence[Policy]) -> set[str]:
    """Every pod label key a policy's podSelector or a peer's podSelector looks at."""
    selectors = [p.pod_selector for p in policies] + [
        peer.pod_selector for p in policies for rule in p.ingress + p.egress for peer in rule.peers if peer.pod_selector
    ]
    return {requirement.key for selector in selectors for requirement in selector.requirements}


def _ip_blocks(policies: Sequence[Policy]) -> list[IPBlock]:
    found = {
        peer.ip_block: None
        for policy in policies
        for rule in policy.ingress + policy.egress
        for peer in rule.peers
        if peer.ip_block is not None
    }
    return list(found)


class _CompiledRule:
    """A rule with its peers as a group bitmask, and a cache of its port bitmasks."""

    def __init__(self, rule: Rule, peers: int):
        self.rule = rule
        self.peers = peers
        self.ports: dict[tuple[Protocol, int], int] = {}


class _Index:
    """Bitmasks over the groups' representatives for every policy, peer and port entry."""

    def __init__(self, world: World, representatives: list[Pod]):
        self.world = world
        self.representatives = representatives
        self.everyone = (1 << len(representatives)) - 1
        self.named: dict[tuple, int] = {}
        self.egress_masks: dict[tuple, int] = {}
        self.tables: dict[tuple[Protocol, int], list[Outcome]] = {}
        compiled = [{d: tuple(self._compile(p, r) for r in p.rules(d)) for d in p.types} for p in world.policies]
        self.selecting = {d: [self._selecting(pod, d) for pod in representatives] for d in Direction}
        self.rules = {
            d: [tuple(rule for i in chosen for rule in compiled[i][d]) for chosen in self.selecting[d]] for d in Direction
        }
        egress_sets = {chosen: n for n, chosen in enumerate(dict.fromkeys(self.selecting[Direction.EGRESS]))}
        self.egress_set = [egress_sets[chosen] for chosen in self.selecting[Direction.EGRESS]]

    def _selecting(self, pod: Pod, direction: Direction) -> tuple[int, ...]:
        return tuple(i for i, p in enumerate(self.world.policies) if p.selects(pod, direction))

    def _compile(self, policy: Policy, rule: Rule) -> _CompiledRule:
        if not rule.peers:
            return _CompiledRule(rule, self.everyone)
        mask = 0
        for peer in rule.peers:
            for g, pod in enumerate(self.representatives):
                if not peer_mismatches(self.world, policy.namespace, peer, pod):
                    mask |= 1 << g
        return _CompiledRule(rule, mask)

    def _ports(self, compiled: _CompiledRule, protocol: Protocol, port: int) -> int:
        """The destination groups on which `compiled`'s ports entries admit protocol/port."""
        key = (protocol, port)
        if key not in compiled.ports:
            mask = 0 if compiled.rule.ports else self.everyone
            for spec in compiled.rule.ports:
                mask |= self._named(spec, protocol, port) if isinstance(spec.port, str) else self._numeric(spec, protocol, port)
            compiled.ports[key] = mask
        return compiled.ports[key]

    def _numeric(self, spec, protocol: Protocol, port: int) -> int:
        # a numeric or protocol-only entry does not depend on the destination: ask with any one
        return 0 if port_mismatches(spec, protocol, port, self.representatives[0]) else self.everyone

    def _named(self, spec, protocol: Protocol, port: int) -> int:
        key = (spec, protocol, port)
        if key not in self.named:
            self.named[key] = sum(
                1 << g for g, pod in enumerate(self.representatives) if not port_mismatches(spec, protocol, port, pod)
            )
        return self.named[key]

    def ingress_sources(self, destination: int, protocol: Protocol, port: int) -> int:
        """The source groups destination group's ingress rules admit on protocol/port."""
        mask = 0
        for compiled in self.rules[Direction.INGRESS][destination]:
            if self._ports(compiled, protocol, port) >> destination & 1:
                mask |= compiled.peers
        return mask

    def _egress_destinations(self, source: int, protocol: Protocol, port: int) -> int:
        key = (self.selecting[Direction.EGRESS][source], protocol, port)
        if key not in self.egress_masks:
            mask = 0
            for compiled in self.rules[Direction.EGRESS][source]:
                mask |= compiled.peers & self._ports(compiled, protocol, port)
            self.egress_masks[key] = mask
        return self.egress_masks[key]

    def column(self, destination: int, protocol: Protocol, port: int) -> list[Outcome]:
        """The outcome of protocol/port to `destination` from every source group, in group order.

        The hot loop of the matrix: states are small integers here (index into _STATES), and the
        egress bit is computed once per distinct set of egress policies.
        """
        table = self._table(protocol, port)
        if self.selecting[Direction.INGRESS][destination]:
            sources = self.ingress_sources(destination, protocol, port)
            ingress = [_DENIED + (sources >> s & 1) for s in range(len(self.representatives))]
        else:
            ingress = [_NOT_ISOLATED] * len(self.representatives)
        egress = [_NOT_ISOLATED] * len(self.egress_set)
        for s, chosen in enumerate(self.selecting[Direction.EGRESS]):
            if chosen and egress[self.egress_set[s]] == _NOT_ISOLATED:
                bit = self._egress_destinations(s, protocol, port) >> destination & 1
                egress[self.egress_set[s]] = _DENIED + bit
        return [table[egress[e] * 3 + i] for e, i in zip(self.egress_set, ingress)]

    def _table(self, protocol: Protocol, port: int) -> list[Outcome]:
        """The nine possible outcomes of one flow, shared by every cell."""
        key = (protocol, port)
        if key not in self.tables:
            self.tables[key] = [Outcome(protocol, port, e, i) for e in _STATES for i in _STATES]
        return self.tables[key]


_STATES = (DirectionState.NOT_ISOLATED, DirectionState.DENIED, DirectionState.ALLOWED)
_NOT_ISOLATED, _DENIED = 0, 1  # _DENIED + 1 is ALLOWED
