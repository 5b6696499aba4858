"""The who-may-talk-to-whom matrix, computed per group of equivalent pods.

Called by `netdoctor policy matrix` and benchmarks/policy_matrix.py. Pods sharing namespace,
labels, container ports and ipBlock memberships are indistinguishable to every policy, so they
form one group; each peer and each named-port entry is evaluated once per group, giving a bitmask
over groups (bit i = group i), and a flow's verdict is a bit test. Cells for individual pods are
expanded lazily from the group pairs. The API semantics stay in engine.peer_mismatches and
engine.port_mismatches; property tests pin this module to engine.decide cell by cell. A peer is
asked about one pod per namespace first (its namespace part), then only about the groups of the
namespaces it admits, and each distinct peer once per policy namespace: 5,000 pods × 1,000
policies × 5 ports take seconds (benchmarks/policy_matrix.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Sequence

from netdoctor.errors import UsageError
from netdoctor.policy.engine import DirectionState, peer_mismatches, port_mismatches
from netdoctor.policy.model import Direction, IPBlock, Peer, Pod, Policy, PolicyProblem, Protocol, Rule, World

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
        """(allowed cells, all cells), counted per group pair (the outcome tuples repeat: each
        distinct one is counted once)."""
        sizes = Counter(self.groups)
        counts: dict[int, tuple[int, int]] = {}
        allowed = total = 0
        for (s, d), outcomes in self.outcomes.items():
            pairs = sizes[s] * sizes[d]
            if pairs:
                found = counts.get(id(outcomes))
                if found is None:
                    found = counts[id(outcomes)] = (sum(o.allowed for o in outcomes), len(outcomes))
                allowed += pairs * found[0]
                total += pairs * found[1]
        return allowed, total


def compute_matrix(world: World, pods: Sequence[Pod] | None = None, ports: Sequence[PortQuery] | None = None) -> Matrix:
    """Every (source, destination, port) among `pods` (default: all); ports default to each destination's containerPorts."""
    pods = tuple(sorted(world.pods if pods is None else pods, key=lambda p: p.key))
    groups, representatives = _group(world, pods)
    index = _Index(world, representatives)
    outcomes = {}
    flow_lists: dict[tuple, int] = {}
    cells: dict[tuple[int, tuple[int, ...]], tuple[Outcome, ...]] = {}  # one tuple object per distinct cell
    for d, destination in enumerate(representatives):
        flows = tuple(_flows(destination, ports))
        tables = [index.table(protocol, port) for protocol, port in flows]
        which = flow_lists.setdefault(flows, len(flow_lists))
        columns = [index.codes(d, protocol, port) for protocol, port in flows]
        for s, codes in enumerate(zip(*columns) if columns else [()] * len(representatives)):
            cell = cells.get((which, codes))
            if cell is None:
                cell = cells[(which, codes)] = tuple(table[code] for table, code in zip(tables, codes))
            outcomes[(s, d)] = cell
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
        self.egress_by_flow: dict[tuple[Protocol, int], list[tuple[int, int]]] = {}
        self.tables: dict[tuple[Protocol, int], list[Outcome]] = {}
        self.namespaces: dict[str, list[int]] = {}  # the groups of each namespace
        for g, pod in enumerate(representatives):
            self.namespaces.setdefault(pod.namespace, []).append(g)
        self.peer_masks: dict[tuple[str, Peer], int] = {}
        compiled = [{d: tuple(self._compile(p, r) for r in p.rules(d)) for d in p.types} for p in world.policies]
        self.policies_of: dict[str, list[int]] = {}  # a policy selects only pods of its own namespace
        for i, policy in enumerate(world.policies):
            self.policies_of.setdefault(policy.namespace, []).append(i)
        self.selecting = {d: [self._selecting(pod, d) for pod in representatives] for d in Direction}
        self.rules = {
            d: [tuple(rule for i in chosen for rule in compiled[i][d]) for chosen in self.selecting[d]] for d in Direction
        }
        egress_sets = {chosen: n for n, chosen in enumerate(dict.fromkeys(self.selecting[Direction.EGRESS]))}
        self.egress_set = [egress_sets[chosen] for chosen in self.selecting[Direction.EGRESS]]
        # one source group per distinct non-empty set of egress policies: the set's verdict is theirs
        self.egress_askers = [(n, self.selecting[Direction.EGRESS].index(chosen))
                              for chosen, n in egress_sets.items() if chosen]

    def _selecting(self, pod: Pod, direction: Direction) -> tuple[int, ...]:
        policies = self.world.policies
        return tuple(i for i in self.policies_of.get(pod.namespace, ()) if policies[i].selects(pod, direction))

    def _compile(self, policy: Policy, rule: Rule) -> _CompiledRule:
        if not rule.peers:
            return _CompiledRule(rule, self.everyone)
        mask = 0
        for peer in rule.peers:
            key = ("", peer) if peer.ip_block is not None else (policy.namespace, peer)  # a block is the same anywhere
            if key not in self.peer_masks:
                self.peer_masks[key] = self._peer_mask(policy.namespace, peer)
            mask |= self.peer_masks[key]
        return _CompiledRule(rule, mask)

    def _peer_mask(self, namespace: str, peer: Peer) -> int:
        """The groups `peer` (of a policy in `namespace`) matches. Selectors: the namespace part is
        asked of one pod per namespace, the pod selector only in the namespaces that pass."""
        world, pods = self.world, self.representatives
        if peer.ip_block is not None:
            return sum(1 << g for g, pod in enumerate(pods) if not peer_mismatches(world, namespace, peer, pod))
        namespace_part = replace(peer, pod_selector=None)
        mask = 0
        for members in self.namespaces.values():
            if peer_mismatches(world, namespace, namespace_part, pods[members[0]]):
                continue
            mask |= sum(1 << g for g in members if peer.pod_selector is None
                        or not peer_mismatches(world, namespace, peer, pods[g]))
        return mask

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

    def codes(self, destination: int, protocol: Protocol, port: int) -> list[int]:
        """The outcome of protocol/port to `destination` from every source group, in group order,
        as indices into `table(protocol, port)`.

        The hot loop of the matrix: states are small integers here (index into _STATES), and the
        egress bit is computed once per distinct set of egress policies.
        """
        if self.selecting[Direction.INGRESS][destination]:
            sources = self.ingress_sources(destination, protocol, port)
            ingress = [_DENIED + (sources >> s & 1) for s in range(len(self.representatives))]
        else:
            ingress = [_NOT_ISOLATED] * len(self.representatives)
        egress = [_NOT_ISOLATED] * len(self.egress_set)
        for e, mask in self._egress_masks(protocol, port):
            egress[e] = 3 * (_DENIED + (mask >> destination & 1))
        return [egress[e] + i for e, i in zip(self.egress_set, ingress)]

    def _egress_masks(self, protocol: Protocol, port: int) -> list[tuple[int, int]]:
        """(egress set, the destination groups it admits on protocol/port) for each distinct set."""
        key = (protocol, port)
        if key not in self.egress_by_flow:
            self.egress_by_flow[key] = [(e, self._egress_destinations(s, protocol, port)) for e, s in self.egress_askers]
        return self.egress_by_flow[key]

    def table(self, protocol: Protocol, port: int) -> list[Outcome]:
        """The nine possible outcomes of one flow, shared by every cell."""
        key = (protocol, port)
        if key not in self.tables:
            self.tables[key] = [Outcome(protocol, port, e, i) for e in _STATES for i in _STATES]
        return self.tables[key]


_STATES = (DirectionState.NOT_ISOLATED, DirectionState.DENIED, DirectionState.ALLOWED)
_NOT_ISOLATED, _DENIED = 0, 1  # _DENIED + 1 is ALLOWED
