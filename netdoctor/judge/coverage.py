"""The Service IP's coverage: which of its ready backends the check's connections reached.

Called by the Service IP judge (judge.paths) to report the coverage and to fail on a ready backend
never reached while another was, and by the probe runner between its rounds of Service IP attempts
(check.command hands it `uncovered`: the probe stage does not import the judge). Pure: which backend
a connection went to is the DNAT the captures show, as judge.hops follows it (the translated packet,
or the node's conntrack); whether it was answered is how its path ended.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from netdoctor.check.plan import MISS_PROBABILITY, ready_backends, sticky
from netdoctor.judge import hops
from netdoctor.model import Evidence, PathOutcome, Step
from netdoctor.observations import TcpOutcome

UNTRANSLATED = ("untranslated", "service-map-stale")  # the hop causes (checks/hops.yaml) of a ClusterIP no DNAT touched


class Reach(Enum):
    REACHED = "reached"  # a connection sent to it was answered
    FAILED = "failed"  # connections were sent to it, none was answered
    UNACCOUNTED = "unaccounted"  # the captures show no connection sent to it


@dataclass(frozen=True)
class BackendReach:
    pod: str
    reach: Reach
    connections: int = 0  # translated to its IP
    answered: int = 0


@dataclass(frozen=True)
class Coverage:
    """`backends` holds every ready backend, or nothing when the captures cannot tell which backend
    a connection went to (no capture, or no translation to a ready backend seen). With session
    affinity (`sticky`) one client's connections all go to one backend: the others are not missed."""

    ready: int  # ready backends behind the Service
    attempts: int  # connections the step made
    connected: int  # of which connected
    backends: tuple[BackendReach, ...] = ()
    unseen_answered: int = 0  # connected attempts the captures attribute to no ready backend
    untold: int = 0  # connections seen leaving the source, neither translated as far as seen nor shown untranslated
    sticky: bool = False  # sessionAffinity ClientIP

    @property
    def known(self) -> bool:
        return bool(self.backends)

    @property
    def chance(self) -> float:
        """How likely uniform random balancing sends none of the attempts to a given backend."""
        return (1 - 1 / self.ready) ** self.attempts if self.ready else 0.0

    def having(self, reach: Reach) -> tuple[BackendReach, ...]:
        return tuple(b for b in self.backends if b.reach is reach)

    @property
    def missed(self) -> tuple[BackendReach, ...]:
        """Ready backends never reached while another was: those whose connections all went
        unanswered, and those no connection went to when chance can't explain it (a miss is
        improbable and every connected attempt is accounted for)."""
        if not self.having(Reach.REACHED):
            return ()
        if self.sticky:
            return self.having(Reach.FAILED)
        improbable = self.unseen_answered == 0 and self.chance < MISS_PROBABILITY
        return tuple(b for b in self.backends
                     if b.reach is Reach.FAILED or (b.reach is Reach.UNACCOUNTED and improbable))


def of(ev: Evidence, step: Step) -> Coverage:
    """The coverage of a step's connections to a Service IP, from its results and the captures."""
    observation = ev.observed(step.key)
    results = tuple(observation.result or ()) if observation and observation.error is None else ()
    ready = ready_backends(ev.facts, ev.node_of(step.probe))
    connected = sum(r.outcome is TcpOutcome.CONNECTED for r in results)
    found = Coverage(len(ready), len(results), connected, sticky=sticky(ev.facts))
    by_ip = {p.ip: p.name for p in ready}
    sent: dict[str, list[PathOutcome]] = {}
    untold = 0
    for target, path in hops.connections(ev, step):
        pod = by_ip.get(target.split(":")[0]) if target else None
        if pod:
            sent.setdefault(pod, []).append(path.outcome)
        untold += target is None and path.cause not in UNTRANSLATED
    if not sent:
        return replace(found, untold=untold)
    backends = tuple(_reach(p.name, sent.get(p.name, [])) for p in ready)
    return replace(found, backends=backends, unseen_answered=max(0, connected - sum(b.answered for b in backends)),
                   untold=untold)


def _reach(pod: str, outcomes: list[PathOutcome]) -> BackendReach:
    answered = sum(o is PathOutcome.DELIVERED for o in outcomes)
    reach = Reach.REACHED if answered else Reach.FAILED if outcomes else Reach.UNACCOUNTED
    return BackendReach(pod, reach, len(outcomes), answered)


def uncovered(ev: Evidence, step: Step) -> tuple[str, ...] | None:
    """The runner's question between its rounds: the ready backends no connection of the step went
    to yet; None when the captures cannot tell which backend a connection reached. Nothing is left
    to cover with fewer than two ready backends, nor when no attempt connected and none could have
    gone to an unseen backend (the captures saw none, or saw them leave untranslated)."""
    found = of(ev, step)
    if found.ready < 2 or found.sticky:
        return ()
    if found.known:
        return tuple(b.pod for b in found.having(Reach.UNACCOUNTED))
    return None if found.connected or found.untold else ()


def summary(found: Coverage) -> str:
    """One line for the check's message: how many ready backends were reached, or why it's unknown."""
    if found.known and found.sticky:
        reached = ", ".join(f"{b.pod} ×{b.connections}" for b in found.having(Reach.REACHED))
        return (f"session affinity ClientIP: one client, one backend ({reached}); every ready backend is checked "
                f"on its pod IP (ND-POD-001)")
    if found.known:
        return f"reached {len(found.having(Reach.REACHED))} of {found.ready} ready backends"
    return (f"coverage of the {found.ready} ready backends unknown, no DNAT seen "
            f"({found.attempts} attempts miss a given one with p ≈ {found.chance:.1g})")


def shortfall(found: Coverage, backends: tuple[BackendReach, ...]) -> str:
    """What became of backends never reached: 'api-2 never reached in 16 attempts'."""
    return "; ".join(f"{b.pod} never reached in {found.attempts} attempts" if b.reach is Reach.UNACCOUNTED
                     else f"{b.pod}: none of the {b.connections} connections sent to it answered" for b in backends)
