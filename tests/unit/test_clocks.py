"""netdoctor.probe.clocks: a node whose clock is off by more than the judge's window must not make
the hop table lose packets that node saw, nor move the hop where a packet was lost. Captures are
synthetic, on test_hops' lab topology: the source on node-1, web-1 and web-2 on node-2."""

from __future__ import annotations

from dataclasses import replace

import pytest

from netdoctor.judge import hops, verdict
from netdoctor.model import Capture, Observation, PathOutcome
from netdoctor.observations import TcpOutcome, TcpResult
from netdoctor.probe import clocks

from test_hops import T0, WEB1, WEB1_VETH, WEB2, WEB2_VETH, Scene, cross, evidence, tcp_step


def shop() -> tuple[Scene, list, list]:
    """web-2 answers; web-1's pod drops the SYN (seen up to node-2's cni0, never at its veth)."""
    s = Scene()
    s.flow(cross(WEB2_VETH), t=T0, key=40400, dst=WEB2, dport=8080)
    s.flow(cross(WEB2_VETH), t=T0 + 0.1, key=40401, dst=WEB2, dport=8080)
    s.flow(cross(WEB1_VETH), t=T0 + 0.2, key=40402, dst=WEB1, dport=8080, reach=8, reply=None)
    steps = [tcp_step("pod:web-2", WEB2, 8080, attempts=2), tcp_step("pod:web-1", WEB1, 8080)]
    connected = TcpResult(WEB2, 8080, TcpOutcome.CONNECTED, 0.01)
    observations = [Observation("pod:web-2", (connected, connected)),
                    Observation("pod:web-1", (TcpResult(WEB1, 8080, TcpOutcome.TIMEOUT, 3.0),))]
    return s, steps, observations


def clock_off(captures: tuple[Capture, ...], node: str, seconds: float) -> tuple[Capture, ...]:
    """What the node's capture says when its clock runs `seconds` ahead (behind when negative)."""
    return tuple(replace(c, packets=tuple(replace(p, time=p.time + seconds) for p in c.packets))
                 if c.node == node else c for c in captures)


def web1_path(steps, observations, captures):
    return next(p for p in hops.paths(replace(evidence(None, steps, observations), captures=captures))
                if p.step_key == "pod:web-1")


@pytest.mark.parametrize("seconds", [-2.0, 20.0], ids=["behind", "ahead"])
def test_a_node_whose_clock_is_off_keeps_its_hops(seconds):
    s, steps, observations = shop()
    true = web1_path(steps, observations, s.captures())
    assert (true.outcome, true.hops[true.at].label) == (PathOutcome.DROPPED, f"node-2 {WEB1_VETH}")
    skewed = clock_off(s.captures(), "node-2", seconds)
    misread = web1_path(steps, observations, skewed)
    assert misread.hops[misread.at].label == "node-2 eth0"  # what the packets' times alone would say
    fixed = web1_path(steps, observations, clocks.aligned(skewed))
    assert (fixed.outcome, fixed.at, fixed.hops) == (true.outcome, true.at, true.hops)


def test_the_offset_is_read_from_the_packets_both_nodes_saw():
    s, _, _ = shop()
    assert clocks.offsets_of(clock_off(s.captures(), "node-2", -2.0)) == {"node-2": pytest.approx(-2.0, abs=0.01)}
    assert clocks.offsets_of(clock_off(s.captures(), "node-1", 5.0)) == {"node-2": pytest.approx(-5.0, abs=0.01)}
    # the first node's clock is the reference: its pod's capture (the source's) shares it
    assert clocks.offsets_of(clock_off(s.captures(), "node-2", 0.03)) == {}  # a transit, not a clock
    assert clocks.offsets_of(s.captures()) == {}
    alone = Scene()
    alone.flow(cross(WEB2_VETH), t=T0, key=40400, dst=WEB2, dport=8080, reach=6, reply=None)  # one packet shared
    assert clocks.offsets_of(clock_off(alone.captures(), "node-2", -2.0)) == {}  # too few to tell


def test_the_report_says_whose_clock_was_off():
    s, steps, observations = shop()
    captures = clocks.aligned(clock_off(s.captures(), "node-2", -2.0))
    assert [(c.point, c.clock_offset, c.clock_reference) for c in captures if c.clock_reference] == \
        [("node-2", pytest.approx(-2.0, abs=0.01), "node-1")]
    status = verdict._capture_status(replace(evidence(None, steps, observations), captures=captures))
    assert status.clocks == ("node-2's clock is 2.0 s behind node-1's (from the packets both captured): its packet "
                             "times are read on node-1's clock",)
