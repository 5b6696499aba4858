"""Every capture's packet times on one clock, for the hop judge.

Called by the runner on each round's captures. A node stamps the packets it captures with its own
clock; one whose clock is off (its time sync stopped, a VM resumed, a chrony that gave up) by more
than the judge's window would have its sightings of a connection fall outside it, and the hop
table would say the packet never reached that node. The same packet crossing two nodes is seen on
both (a SYN after its DNAT, its SYN-ACK, an echo, a DNS query): the median difference of their
first sightings is the difference of the clocks, give or take a transit of a millisecond. Each node
is set on the clock of the first node captured (the source's), through any node already set with
which it shares packets; a difference under SKEW_S is transit, and left alone.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from netdoctor.model import Capture
from netdoctor.observations import Packet

SKEW_S = 0.1  # a larger difference is the clocks', not the wire's
MIN_SHARED = 3  # packets two nodes must both have seen to compare their clocks


def aligned(captures: tuple[Capture, ...]) -> tuple[Capture, ...]:
    """The captures with each node's packet times on the first node's clock (and its offset said)."""
    firsts = _first_sightings(captures)
    offsets = _offsets(firsts)
    reference = next(iter(firsts), None)
    return tuple(_shifted(c, offsets[c.node], reference) if c.node in offsets else c for c in captures)


def offsets_of(captures: tuple[Capture, ...]) -> dict[str, float]:
    """Seconds each node's clock is ahead of the first node's, for those off by SKEW_S or more."""
    return _offsets(_first_sightings(captures))


def _offsets(firsts: dict[str, dict[tuple, float]]) -> dict[str, float]:
    nodes = list(firsts)
    found = {nodes[0]: 0.0} if nodes else {}
    while True:
        more = {node: found[other] + difference for node in nodes if node not in found
                for other in found if (difference := _difference(firsts[node], firsts[other])) is not None}
        if not more:
            break
        found.update(more)
    return {node: offset for node, offset in found.items() if abs(offset) >= SKEW_S}


def _difference(mine: dict[tuple, float], theirs: dict[tuple, float]) -> float | None:
    shared = mine.keys() & theirs.keys()
    if len(shared) < MIN_SHARED:
        return None
    return statistics.median(mine[key] - theirs[key] for key in shared)


def _first_sightings(captures: tuple[Capture, ...]) -> dict[str, dict[tuple, float]]:
    """Per node (in the captures' order), when each packet was first seen there."""
    firsts: dict[str, dict[tuple, float]] = {}
    for capture in captures:
        if capture.node is None or capture.blind:
            continue
        seen = firsts.setdefault(capture.node, {})
        for p in capture.packets:
            if not p.src.startswith("127."):
                key = _identity(p)
                seen[key] = min(seen.get(key, p.time), p.time)
    return firsts


def _identity(p: Packet) -> tuple:
    """What tells a packet from the run's others wherever it is seen (not its TTL, its interface or
    its tunnel): a resent SYN looks like its first, and the median sets such a pair aside."""
    return (p.proto, p.src, p.dst, p.sport, p.dport, p.tcp_flags, p.icmp_type, p.icmp_id, p.length,
            p.dns.id if p.dns else None)


def _shifted(capture: Capture, offset: float, reference: str | None) -> Capture:
    return replace(capture, packets=tuple(replace(p, time=p.time - offset) for p in capture.packets),
                   clock_offset=offset, clock_reference=reference)
