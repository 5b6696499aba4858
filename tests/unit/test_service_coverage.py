"""The Service IP's coverage of its ready backends: the plan's rounds and their bound, the coverage
read from the captures (judge.coverage), the runner's second round (asked between the rounds, and
joined to the first) and ND-SVC-001's verdict: never PASS with a ready backend unaccounted for when
the captures could tell, FAIL naming a backend never reached while another was.

Captures are synthetic, on test_hops' lab topology: the source on node-1, web-1 and web-2 on node-2."""

from __future__ import annotations

from dataclasses import replace

import pytest

from netdoctor.check import plan
from netdoctor.judge import coverage
from netdoctor.judge.coverage import Reach
from netdoctor.judge import hops, paths as judge_paths, verdict
from netdoctor.judge.paths import judge_service
from netdoctor.model import Capture, CaptureMode, Expect, Observation, PathOutcome, State, TcpConnect
from netdoctor.observations import NatEntry, PingOutcome, PingResult, TcpOutcome, TcpResult
from netdoctor.probe import runner

from test_hops import CLUSTER_IP, SRC, T0, WEB1, WEB1_VETH, WEB2, WEB2_VETH, Scene, cross, evidence, facts, ping_step, pod, tcp_step

VETH = {WEB1: WEB1_VETH, WEB2: WEB2_VETH}


def connect(scene: Scene, n: int, backend: str | None, how: str = "answer") -> TcpOutcome:
    """Connection n to the ClusterIP, DNATed at node-1's cni0 to `backend`: 'answer'; 'dropped'
    (translated, seen leaving node-1, lost at node-2); 'unseen' (dropped on node-1 right after the
    DNAT: no translated packet, no conntrack entry)."""
    route = cross(VETH.get(backend, WEB1_VETH))
    t, key = T0 + n * 0.01, 41000 + n
    if how == "answer":
        scene.flow(route, t=t, key=key, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(backend, 8080))
        return TcpOutcome.CONNECTED
    if how == "dropped":
        scene.flow(route, t=t, key=key, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(backend, 8080), reach=5,
                   reply=None)
        return TcpOutcome.TIMEOUT
    scene.flow(route, t=t, key=key, dst=CLUSTER_IP, dport=80, reach=2, reply=None)
    return TcpOutcome.TIMEOUT


def service(scene: Scene | None, outcomes: list[TcpOutcome], **changes):
    step = tcp_step("svc:clusterip", CLUSTER_IP, 80, attempts=len(outcomes))
    results = tuple(TcpResult(CLUSTER_IP, 80, o, 0.01) for o in outcomes)
    return evidence(scene, [step], [Observation(step.key, results)], **changes), step


def alternating(n: int, broken: str | None = None, how: str = "unseen"):
    """n connections alternating web-1, web-2; those to `broken` fail as `how` says."""
    s = Scene()
    outcomes = [connect(s, i, b, how if b == broken else "answer") for i, b in enumerate([WEB1, WEB2] * (n // 2))]
    return s, outcomes


def svc001(ev):
    return next(r for r in judge_service(ev) if r.check_id == "ND-SVC-001")


# --- the plan's rounds -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 10, 20])
def test_attempts_to_cover_is_the_fewest_that_make_missing_a_backend_improbable(n):
    k = plan.attempts_to_cover(n)
    assert (1 - 1 / n) ** k < plan.MISS_PROBABILITY <= (1 - 1 / n) ** (k - 1)


def test_the_known_figures():
    assert [plan.attempts_to_cover(n) for n in (1, 2, 3, 5, 10)] == [1, 10, 18, 31, 66]


def service_action(f, capture: CaptureMode) -> TcpConnect:
    step = next(s for s in plan.build(f, plan.Options(capture=capture)).steps if s.check_id == "ND-SVC-001")
    return step.action


def test_with_capture_a_first_round_per_backend_then_a_round_that_covers():
    action = service_action(facts(), CaptureMode.AUTO)
    assert (action.attempts, action.until_covered) == (6, 10)


def test_without_capture_one_round_big_enough_that_a_miss_is_improbable():
    action = service_action(facts(), CaptureMode.OFF)
    assert (action.attempts, action.until_covered) == (10, 0)


def test_only_ready_backends_count_and_one_leaves_nothing_to_cover():
    f = facts(backends=(pod("web-1", WEB1, "node-2"), replace(pod("web-2", WEB2, "node-2"), ready=False)))
    assert (service_action(f, CaptureMode.AUTO).attempts, service_action(f, CaptureMode.AUTO).until_covered) == (4, 0)
    assert service_action(f, CaptureMode.OFF).attempts == 4


def test_the_attempts_are_capped():
    many = tuple(pod(f"web-{i}", f"10.244.2.{i}", "node-2") for i in range(1, 41))
    auto, off = service_action(facts(backends=many), CaptureMode.AUTO), service_action(facts(backends=many), CaptureMode.OFF)
    assert auto.attempts + auto.until_covered == plan.MAX_SERVICE_ATTEMPTS
    assert off.attempts == plan.MAX_SERVICE_ATTEMPTS


# --- the coverage, from the captures ---------------------------------------------------------


def test_every_backend_reached_is_counted_from_the_dnat():
    s, outcomes = alternating(6)
    ev, step = service(s, outcomes)
    found = coverage.of(ev, step)
    assert [(b.pod, b.reach, b.connections, b.answered) for b in found.backends] == [
        ("web-1", Reach.REACHED, 3, 3), ("web-2", Reach.REACHED, 3, 3)]
    assert found.missed == () and coverage.uncovered(ev, step) == ()
    assert coverage.summary(found) == "reached 2 of 2 ready backends"


def test_a_backend_whose_translated_connections_are_lost_has_failed():
    s, outcomes = alternating(6, broken=WEB2, how="dropped")
    ev, step = service(s, outcomes)
    found = coverage.of(ev, step)
    assert [b.reach for b in found.backends] == [Reach.REACHED, Reach.FAILED]
    assert [b.pod for b in found.missed] == ["web-2"]
    assert coverage.uncovered(ev, step) == ()  # shown unreachable: nothing left to try


def test_the_dnat_read_from_conntrack_counts_too():
    s = Scene()
    outcomes = [connect(s, 0, WEB1), connect(s, 1, WEB2, "unseen")]
    s.nat["node-1"].append(NatEntry("tcp", SRC, 41001, CLUSTER_IP, 80, WEB2, 8080))
    ev, step = service(s, outcomes)
    assert [b.reach for b in coverage.of(ev, step).backends] == [Reach.REACHED, Reach.FAILED]


def test_connections_dropped_before_any_translated_packet_leave_their_backend_unaccounted():
    s, outcomes = alternating(6, broken=WEB2)
    ev, step = service(s, outcomes)
    found = coverage.of(ev, step)
    assert [b.reach for b in found.backends] == [Reach.REACHED, Reach.UNACCOUNTED]
    assert coverage.uncovered(ev, step) == ("web-2",)  # the runner tries again
    assert found.missed == ()  # 6 attempts: missing web-2 by chance is not improbable (1/64)


def test_after_enough_attempts_a_backend_never_reached_is_missed():
    s, outcomes = alternating(16, broken=WEB2)
    found = coverage.of(*service(s, outcomes))
    assert [b.pod for b in found.missed] == ["web-2"]
    assert coverage.shortfall(found, found.missed) == "web-2 never reached in 16 attempts"


def test_a_connected_attempt_the_captures_cannot_place_keeps_chance_open():
    s, outcomes = alternating(16, broken=WEB2)
    outcomes[1] = TcpOutcome.CONNECTED  # the probe says connected; the captures missed where it went
    found = coverage.of(*service(s, outcomes))
    assert found.unseen_answered == 1 and found.missed == ()


def test_without_capture_coverage_is_unknown_and_the_runner_makes_up_the_attempts():
    ev, step = service(None, [TcpOutcome.CONNECTED] * 6)
    found = coverage.of(ev, step)
    assert not found.known and coverage.uncovered(ev, step) is None
    assert coverage.summary(found) == \
        "coverage of the 2 ready backends unknown, no DNAT seen (6 attempts miss a given one with p ≈ 0.02)"


def test_every_attempt_sent_to_the_broken_backend_leaves_the_other_to_try():
    s = Scene()
    outcomes = [connect(s, i, WEB2, "dropped") for i in range(4)]
    assert coverage.uncovered(*service(s, outcomes)) == ("web-1",)
    s = Scene()
    outcomes = [connect(s, i, WEB2, "unseen") for i in range(4)]
    assert coverage.uncovered(*service(s, outcomes)) is None  # where they went is unseen: try again


def test_nothing_to_cover_when_every_connection_left_untranslated_or_one_backend_is_ready():
    s = Scene()
    for i in range(4):  # no Service rules on node-1: the SYN leaves still addressed to the ClusterIP
        s.flow(cross(), t=T0 + i * 0.01, key=41000 + i, dst=CLUSTER_IP, dport=80, reach=5, reply=None)
    assert coverage.uncovered(*service(s, [TcpOutcome.TIMEOUT] * 4)) == ()
    s, outcomes = alternating(2)
    assert coverage.uncovered(*service(s, outcomes, backends=(pod("web-1", WEB1, "node-2"),))) == ()


# --- ND-SVC-001 ------------------------------------------------------------------------------


def test_pass_reports_the_coverage_and_the_spread():
    s, outcomes = alternating(6)
    result = svc001(service(s, outcomes)[0])
    assert result.state is State.PASS
    assert result.message == f"6/6 connections to {CLUSTER_IP}:80; reached 2 of 2 ready backends"
    assert "spread: web-1 ×3, web-2 ×3" in result.evidence


def test_a_backend_never_reached_fails_naming_it():
    s, outcomes = alternating(16, broken=WEB2)
    result = svc001(service(s, outcomes)[0])
    assert (result.state, result.cause) == (State.FAIL, "backend-unreached")
    assert result.message == "web-2 never reached in 16 attempts (reached 1 of 2 ready backends)"
    assert result.params["backends"] == "web-2" and result.params["reached"] == "web-1 ×8"


def test_a_backend_shown_unreachable_fails_naming_it_after_the_first_round():
    s, outcomes = alternating(6, broken=WEB2, how="dropped")
    result = svc001(service(s, outcomes)[0])
    assert (result.state, result.cause, result.params["backend"]) == (State.FAIL, "backend-unreached", "web-2")
    assert result.message.startswith("web-2: none of the 3 connections sent to it answered")


def test_all_connected_but_a_backend_never_chosen_is_never_a_pass():
    s = Scene()
    outcomes = [connect(s, i, WEB1) for i in range(6)]
    assert svc001(service(s, outcomes)[0]).state is State.WARN  # 6 attempts: could be chance
    s = Scene()
    outcomes = [connect(s, i, WEB1) for i in range(16)]
    result = svc001(service(s, outcomes)[0])
    assert (result.state, result.cause) == (State.FAIL, "backend-unreached")  # 16: the Service never sends there


def test_without_capture_the_check_passes_saying_coverage_is_unknown():
    result = svc001(service(None, [TcpOutcome.CONNECTED] * 10)[0])
    assert result.state is State.PASS and "unknown, no DNAT seen (10 attempts" in result.message


def test_without_capture_connections_that_needed_a_syn_retransmission_are_a_warning():
    # a backend dropping new connections right after the DNAT: the kernel resends the SYN after 1 s,
    # the resent one is balanced anew and lands on the good backend, so every connect "succeeds"
    step = tcp_step("svc:clusterip", CLUSTER_IP, 80, attempts=10)
    results = tuple(TcpResult(CLUSTER_IP, 80, TcpOutcome.CONNECTED, 1.02 if i % 2 else 0.01) for i in range(10))
    result = svc001(evidence(None, [step], [Observation(step.key, results)]))
    assert (result.state, result.cause, result.params["slow"]) == (State.WARN, "syn-retransmitted", "5")


# --- the runner's second round ----------------------------------------------------------------


def test_the_runner_repeats_only_steps_planned_to_cover_and_only_when_asked():
    s, outcomes = alternating(6, broken=WEB2)
    ev, step = service(s, outcomes)
    covering = replace(step, action=replace(step.action, until_covered=10))
    ev = replace(ev, plan=replace(ev.plan, steps=(covering, tcp_step("pod:web-1", WEB1, 8080))))
    [(again, why)] = runner._coverage_round(ev, coverage.uncovered)
    assert again.key == step.key and (again.action.attempts, again.action.until_covered) == (10, 0)
    assert why == "not reached yet: web-2"
    assert runner._coverage_round(ev, lambda ev, step: None)[0][1] == \
        "the captures cannot tell which backend each connection reached"
    assert runner._coverage_round(ev, lambda ev, step: ()) == []


def capture(point: str, packets=(), nat=(), pcap=b"", blind=None) -> Capture:
    return Capture(point, "node-1", None, tuple(packets), nat=tuple(nat), pcap=pcap, blind=blind)


def test_the_rounds_are_joined_results_after_results_packets_after_packets():
    ok, lost = TcpResult(CLUSTER_IP, 80, TcpOutcome.CONNECTED, 0.01), TcpResult(CLUSTER_IP, 80, TcpOutcome.TIMEOUT, 3.0)
    header = b"H" * 24
    first = runner._Round((Observation("svc", (ok, ok), None, ("round 1",)), Observation("pod", (ok,))),
                          (capture("node-1", ["p1"], ["n1"], header + b"r1"), capture("node-2", blind="refused")), 1.0, 0.5)
    extra = runner._Round((Observation("svc", (lost,), None, ("round 2",)),),
                          (capture("node-1", ["p2"], ["n2"], header + b"r2"), capture("node-2", ["q"])), 3.0, 0.4)
    step = tcp_step("svc", CLUSTER_IP, 80)
    joined = runner._joined(first, extra, [(step, "not reached yet: web-2")])
    svc, pod_ = joined.observations
    assert svc.result == (ok, ok, lost) and svc.log == ("round 1", "one more round (not reached yet: web-2):", "round 2")
    assert pod_ == first.observations[1]
    node1, node2 = joined.captures
    assert node1.packets == ("p1", "p2") and node1.nat == ("n1", "n2") and node1.pcap == header + b"r1r2"
    assert node1.rounds == (0, 1) and node1.packets_since(1) == ("p2",)
    assert node2 == first.captures[1]  # blind in the first round: the second's packets cannot speak for it
    assert (joined.probe_seconds, joined.capture_seconds) == (4.0, 0.9)


def test_an_errored_second_round_adds_its_error_never_results():
    ok = TcpResult(CLUSTER_IP, 80, TcpOutcome.CONNECTED, 0.01)
    first = runner._Round((Observation("svc", (ok,)),), (capture("node-1", ["p1"]),), 1.0, 0.5)
    extra = runner._Round((Observation("svc", None, "exec failed", ("ApiError: exec failed",)),),
                          (capture("node-1", blind="capture failed"),), 1.0, 0.5)
    joined = runner._joined(first, extra, [(tcp_step("svc", CLUSTER_IP, 80), "why")])
    assert joined.observations[0].result == (ok,) and joined.observations[0].error is None
    assert joined.observations[0].log[-1] == "ApiError: exec failed"
    assert joined.captures == extra.captures  # blind in the second round: blind, whatever the first saw


# --- the runner's look again at what the probes' newness may explain ------------------------


def retransmitted(n: int, slow: int) -> tuple[TcpResult, ...]:
    return tuple(TcpResult(CLUSTER_IP, 80, TcpOutcome.CONNECTED, 1.03 if i < slow else 0.02) for i in range(n))


def test_connections_that_needed_a_retransmission_are_looked_at_again_with_the_whole_attempt_budget():
    # a new probe pod's first SYNs can be dropped by a remote node that has not learnt its IP yet
    svc, pod_ = tcp_step("svc:clusterip", CLUSTER_IP, 80, attempts=6), tcp_step("pod:web-1", WEB1, 8080)
    svc = replace(svc, action=replace(svc.action, until_covered=16))
    observations = [Observation(svc.key, retransmitted(16, 2)), Observation(pod_.key, retransmitted(1, 1))]
    ev = evidence(None, [svc, pod_], observations)
    [(again, why)] = runner._settle_round(ev, judge_paths.unsettled)
    assert again.key == svc.key and (again.action.attempts, again.action.until_covered) == (6 + 16, 0)
    assert (svc.action.spacing, again.action.spacing) == (0, runner.SETTLE_SPACING_S)  # gently, this time
    assert why == "2 connections needed a SYN retransmission"
    settled = evidence(None, [svc], [Observation(svc.key, retransmitted(16, 0))])
    assert runner._settle_round(settled, judge_paths.unsettled) == []


def test_a_step_looked_at_again_is_judged_on_the_new_look_and_the_log_keeps_the_first():
    step = tcp_step("svc:clusterip", CLUSTER_IP, 80, attempts=10)
    early = Observation(step.key, retransmitted(10, 3), None, ("svc: connected ×10",))
    first = runner._Round((early,), (capture("node-1", ["p1"]),), 1.2, 0.3)
    extra = runner._Round((Observation(step.key, retransmitted(10, 0), None, ("svc: again",)),),
                          (capture("node-1", ["p2"]),), 0.1, 0.3)
    why = runner._settle_round(evidence(None, [step], [early]), judge_paths.unsettled)
    joined = runner._joined(first, extra, why, runner._instead)
    [svc] = joined.observations
    assert svc.result == extra.observations[0].result and svc.log[0] == "svc: connected ×10"
    assert "set aside: 3 connections needed a SYN retransmission while the probes were new" in svc.log[1]
    assert svc.log[-1] == "svc: again" and joined.captures[0].packets == ("p1", "p2")
    assert svc001(evidence(None, [step], [svc])).state is State.PASS
    assert verdict._second_looks(evidence(None, [step], [svc]), "ND-SVC-001") == (
        f"source → {CLUSTER_IP}:80: judged on a second look; in the first, while the probes were new, 3 connections "
        "needed a SYN retransmission",)
    assert svc001(evidence(None, [step], [early])).cause == "syn-retransmitted"  # what it would have said
    failed = runner._Round((Observation(step.key, None, "exec failed", ("ApiError: exec failed",)),), (), 0.1, 0.0)
    kept = runner._joined(first, failed, why, runner._instead).observations[0]
    assert kept.result == early.result and kept.log[-1] == "ApiError: exec failed"


def test_retransmissions_confirmed_by_the_new_look_still_warn():
    step = tcp_step("svc:clusterip", CLUSTER_IP, 80, attempts=10)
    early = Observation(step.key, retransmitted(10, 3))
    why = runner._settle_round(evidence(None, [step], [early]), judge_paths.unsettled)
    first = runner._Round((early,), (), 1.2, 0.0)
    again = runner._Round((Observation(step.key, retransmitted(10, 2)),), (), 1.2, 0.0)
    [svc] = runner._joined(first, again, why, runner._instead).observations
    result = svc001(evidence(None, [step], [svc]))
    assert (result.state, result.cause, result.params["slow"]) == (State.WARN, "syn-retransmitted", "2")


def test_pings_that_got_no_reply_are_looked_at_again_and_judged_on_the_new_look():
    # a new probe's one echo request meets the same policy rules that do not know it yet
    small, big = (replace(ping_step(f"ping:{size}", WEB1, size, size > 56), check_id="ND-NODE-004") for size in (56, 1472))
    lost = [Observation(step.key, PingResult(WEB1, step.action.size, PingOutcome.TIMEOUT)) for step in (small, big)]
    why = runner._settle_round(evidence(None, [small, big], lost), judge_paths.unsettled)
    assert why == [(small, "the echo got no reply"), (big, "the echo got no reply")]  # as planned, each size
    replies = [Observation(step.key, PingResult(WEB1, step.action.size, PingOutcome.REPLY, 0.3)) for step in (small, big)]
    joined = runner._joined(runner._Round(tuple(lost), (), 0.1, 0.0), runner._Round(tuple(replies), (), 0.1, 0.0),
                            why, runner._instead)
    ev = evidence(None, [small, big], joined.observations)
    assert [o.result.outcome for o in joined.observations] == [PingOutcome.REPLY] * 2
    assert all(o.set_aside == "the echo got no reply" and o.from_round == 1 for o in joined.observations)
    assert verdict._second_looks(ev, "ND-NODE-004")[0].endswith("while the probes were new, the echo got no reply")
    answered = [Observation(small.key, replies[0].result),
                Observation(big.key, PingResult(WEB1, 1472, PingOutcome.FRAG_NEEDED, mtu=1450))]
    assert runner._settle_round(evidence(None, [small, big], answered), judge_paths.unsettled) == []
    blocked = replace(small, expect=Expect.BLOCKED)
    assert judge_paths.unsettled(evidence(None, [blocked], lost[:1]), blocked) is None



def test_a_step_whose_packets_look_like_one_looked_at_again_is_looked_at_again_with_it():
    # the probe of the source's node is the source: its Service IP step sends what ND-SVC-001's sends
    svc = tcp_step("svc:clusterip", CLUSTER_IP, 80, attempts=6)
    svc = replace(svc, action=replace(svc.action, until_covered=16))
    twin = replace(tcp_step("nodesvc:source", CLUSTER_IP, 80, attempts=3), check_id="ND-NODE-003")
    pod_ = tcp_step("pod:web-1", WEB1, 8080)
    small, big = (replace(ping_step(f"ping:{size}", WEB1, size), check_id="ND-NODE-004") for size in (56, 1472))
    observations = [Observation(svc.key, retransmitted(6, 2)), Observation(twin.key, retransmitted(3, 0)),
                    Observation(pod_.key, retransmitted(1, 0)),
                    Observation(small.key, PingResult(WEB1, 56, PingOutcome.TIMEOUT)),
                    Observation(big.key, PingResult(WEB1, 1472, PingOutcome.REPLY, 0.3))]
    ev = evidence(None, [svc, twin, pod_, small, big], observations)
    doubtful = runner._settle_round(ev, judge_paths.unsettled)
    assert [step.key for step, _ in doubtful] == [svc.key, small.key]  # the twin itself did not retransmit
    both = runner._with_twins(ev.plan.steps, doubtful, ev.observations)
    assert [step.key for step, _ in both] == [svc.key, small.key, twin.key]  # not another size, not another address
    again, why = both[-1]
    assert (again.action.attempts, again.action.until_covered, again.action.spacing) == (3, 0, runner.SETTLE_SPACING_S)
    assert why == (f"source → {CLUSTER_IP}:80: 2 connections needed a SYN retransmission (from this probe to this "
                   f"address too: the captures cannot tell its connections from these)")


def test_a_twin_judged_on_the_first_round_would_follow_the_connections_set_aside():
    """Round 1: the Service step's connection rejected by a node that did not know the new probe,
    its twin's connected; round 2, looked at again, both connect. The twin's path from its own
    results' round on shows what it saw, not the other's rejection."""
    svc, twin = tcp_step("svc:clusterip", CLUSTER_IP, 80), \
        replace(tcp_step("nodesvc:source", CLUSTER_IP, 80), check_id="ND-NODE-003")
    early, later = Scene(), Scene()
    early.flow(cross(), t=T0, key=40401, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(WEB1, 8080), reach=5,
               reply="rst")
    early.flow(cross(), t=T0 + 0.01, key=40402, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(WEB1, 8080))
    later.flow(cross(), t=T0 + 3, key=40403, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(WEB1, 8080))
    later.flow(cross(), t=T0 + 3.01, key=40404, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(WEB1, 8080))
    joined = tuple(runner._more_packets(a, b) for a, b in zip(early.captures(), later.captures()))
    ok = (TcpResult(CLUSTER_IP, 80, TcpOutcome.CONNECTED, 0.01),)
    first = (Observation(svc.key, (TcpResult(CLUSTER_IP, 80, TcpOutcome.REFUSED, 0.01),)), Observation(twin.key, ok))
    looked = runner._with_twins((svc, twin), [(svc, "1 connection refused or unreachable")], first)
    joined_obs = runner._joined(runner._Round(first, (), 0.1, 0.0), runner._Round(
        tuple(Observation(o.step_key, ok) for o in first), (), 0.1, 0.0), looked, runner._instead).observations
    ev = replace(evidence(None, [svc, twin], joined_obs), captures=joined)
    assert {p.step_key: p.outcome for p in hops.paths(ev)} == {svc.key: PathOutcome.DELIVERED,
                                                           twin.key: PathOutcome.DELIVERED}
    alone = replace(ev, observations=(joined_obs[0], first[1]))  # the twin judged on the first round too
    assert {p.step_key: p.outcome for p in hops.paths(alone)}[twin.key] is PathOutcome.REJECTED

def refused(step) -> Observation:
    return Observation(step.key, (TcpResult(WEB1, 8080, TcpOutcome.REFUSED, 0.01),))


def test_refusals_by_a_node_or_unexplained_are_looked_at_again_the_pods_own_are_not():
    # kube-router rejects a new pod's SYN until its IP is in the node's sets
    step = tcp_step("pod:web-1", WEB1, 8080)
    by_node = Scene()
    by_node.flow(cross(), t=T0, key=40401, dst=WEB1, dport=8080, reach=5, reply="rst")
    assert judge_paths.unsettled(evidence(by_node, [step], [refused(step)]), step) == \
        "1 connection refused or unreachable"
    assert judge_paths.unsettled(evidence(None, [step], [refused(step)]), step) == \
        "1 connection refused or unreachable"  # no capture: who refused is unknown
    by_pod = Scene()
    by_pod.flow(cross(), t=T0, key=40400, dst=WEB1, dport=8080, reply="rst")
    assert judge_paths.unsettled(evidence(by_pod, [step], [refused(step)]), step) is None
    blocked = replace(step, expect=Expect.BLOCKED)
    assert judge_paths.unsettled(evidence(None, [blocked], [refused(blocked)]), blocked) is None


def test_the_path_of_a_step_looked_at_again_follows_only_its_new_connections():
    step = tcp_step("pod:web-1", WEB1, 8080)
    early, later = Scene(), Scene()
    early.flow(cross(), t=T0, key=40401, dst=WEB1, dport=8080, reach=5, reply="rst")
    later.flow(cross(), t=T0 + 2, key=40402, dst=WEB1, dport=8080)
    joined = tuple(runner._more_packets(a, b) for a, b in zip(early.captures(), later.captures()))
    ok = Observation(step.key, (TcpResult(WEB1, 8080, TcpOutcome.CONNECTED, 0.01),), None, (), 0.0, 1)
    ev = replace(evidence(None, [step], [ok]), captures=joined)
    [path] = hops.paths(ev)
    assert path.outcome is PathOutcome.DELIVERED and path.connections == 1
    [path] = hops.paths(replace(ev, observations=(refused(step),)))  # judged on every round
    assert path.outcome is PathOutcome.REJECTED  # its try: the earliest connection
