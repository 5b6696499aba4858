"""The probe stage: launch the plan's probes, run its steps in parallel threads (over each
probe's command channel, started while the captures start), record each step's Observation with
a buffered log. A step's exception becomes an Observation with `error`
(so the judge reports ERROR), never a traceback.

Called by check.command between plan and judge; `progress` is told about each finished step so the
terminal can show live progress. Only this module touches probes.

The steps run in one round under packet capture, decoded by one worker process for the run
(netdoctor.probe.decoding), each node's packet times then put on one clock
(netdoctor.probe.clocks). A step planned with `until_covered` attempts (the Service IP) gets one
more round, under a new capture, when `uncovered` (the judge's question, passed in by
check.command) says the first round's captures show a ready backend no connection reached yet, or
cannot tell; the rounds' observations and captures are joined. A step whose first results may
only show that the probe pods are new (`unsettled`, the judge's second question: a SYN the kernel
had to resend, or an echo lost, while a remote node's policy or routes did not know the new pod
yet) is looked at again once the probes are PROPAGATION_S old, its connections started apart, and
judged on that look alone (the first stays in the log); so is each step the captures cannot tell
from it (the same probe to the same address), whose path would otherwise follow the connections
set aside.

`run_many` runs several plans (many targets, a smoke file's expectations) on one set of probes:
a probe per (namespace, labels, node, purpose) serves every plan that asks for it, a step two plans
share (same probe, same action) runs once, and all steps run in one round under one capture; each
plan gets its results back under its own probe roles and step keys.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable

from netdoctor.probe import clocks, commands
from netdoctor.errors import NetdoctorError, ProbeError
from netdoctor.cluster.kube import Kube
from netdoctor.model import (
    Capture, CaptureMode, DnsQuery, Evidence, Facts, InspectListeners, Observation, Ping, Plan, PlannedProbe,
    ProbePurpose, ReadResolvConf, RunningProbe, Step, TcpConnect, UdpExchange,
)
from netdoctor.observations import DnsOutcome, ListenerStatus, ListenerTable, ResolvConf
from netdoctor.probe.fleet import (
    DEFAULT_IMAGE, Capability, LaunchFailure, OwnerFallback, Probe, ProbeFleet, ProbeLaunchError, ProbeRole, ProbeSpec,
    Starting, listeners_of,
)
from netdoctor.probe.capture import Point, Sniffer
from netdoctor.probe.decoding import DecoderProcess


@dataclass(frozen=True)
class RunOptions:
    timeout: float = 3.0  # per network probe
    image: str = DEFAULT_IMAGE
    keep: bool = False
    workers: int = 48  # steps at once: a plan has ~25, each mostly waiting on its exec
    deadline: int | None = None  # seconds the probes and their owner live; None: from the timeout


@dataclass(frozen=True)
class RunResult:
    observations: tuple[Observation, ...]
    kept: tuple[str, ...]  # "kubectl exec" lines for --keep
    launch_seconds: float = 0.0  # until every probe ran
    probe_seconds: float = 0.0  # running the steps
    captures: tuple[Capture, ...] = ()
    probes: dict[str, RunningProbe] = field(default_factory=dict)  # traffic probes by role
    capture_seconds: float = 0.0  # starting and stopping the captures, decoding them
    owner_fallbacks: tuple[OwnerFallback, ...] = ()  # namespaces whose probes' owner does not expire by itself
    pods_created: int = 0  # probe pods the run created (a shared run's, for every job)


_PCAP_HEADER = 24  # a classic pcap file's global header
Uncovered = Callable[[Evidence, Step], tuple[str, ...] | None]
Unsettled = Callable[[Evidence, Step], str | None]
# How long after the probes run their IPs may still be unknown to a node's policy or routes:
# Calico's Felix and Cilium's agents learn a new pod from the API server (0.1-0.5 s in the lab, up
# to 1.6 s with its policy-lag fault; seconds on a busy cluster); a step looked at again runs no earlier.
PROPAGATION_S = 3.0
# A look again starts its connections this far apart: all at once, the dozen a step may make can
# fill a backend's accept queue (python's http.server listens with a backlog of 5) while its process
# waits for a CPU, and the kernel drops the SYNs that do not fit: retransmissions of our own making.
SETTLE_SPACING_S = 0.02


@dataclass(frozen=True)
class _Round:
    """One round of steps under capture."""

    observations: tuple[Observation, ...]
    captures: tuple[Capture, ...]
    probe_seconds: float
    capture_seconds: float
    count: int = 1  # rounds joined in it


@dataclass(frozen=True)
class Job:
    """One plan of a shared run, with the facts its steps need (backends, the source pod)."""

    plan: Plan
    facts: Facts


def run(kube: Kube, plan: Plan, facts: Facts, options: RunOptions,
        progress: Callable[[Step, Observation], None] = lambda step, obs: None,
        uncovered: Uncovered | None = None, unsettled: Unsettled | None = None,
        decoding: DecoderProcess | None = None) -> RunResult:
    """`uncovered(evidence, step)`: the ready backends the step's connections have not reached yet
    (None: the captures cannot tell); None for no second round at all. `unsettled(evidence, step)`:
    why the step's results may only show that the probes are new (None: they stand). `decoding`:
    a decoder process the caller started early; without one, a capturing run starts its own."""
    return run_many(kube, (Job(plan, facts),), options, progress, uncovered, unsettled, decoding)[0]


def run_many(kube: Kube, jobs: tuple[Job, ...], options: RunOptions,
             progress: Callable[[Step, Observation], None] = lambda step, obs: None,
             uncovered: Uncovered | None = None, unsettled: Unsettled | None = None,
             decoding: DecoderProcess | None = None) -> tuple[RunResult, ...]:
    """Every job's steps on one shared set of probes, in one round (then a coverage round, and a
    round looking again at what the probes' newness may explain)."""
    started = time.monotonic()
    shared = _Shared.of(jobs)
    own = decoding is None and shared.plan.capture is not CaptureMode.OFF
    with ProbeFleet(kube, run_timeout=options.timeout * 60, keep=options.keep, deadline_seconds=options.deadline) as fleet, \
            DecoderProcess() if own else nullcontext(decoding) as decoding, \
            _EarlyStart(shared.plan, options, decoding) as early:
        probes, nodes, blind = _launch(fleet, shared.plan, options, early)
        launched = time.monotonic()
        for probe in probes.values():  # most opened their command channel as soon as they ran
            probe.connect()
        pods_created = sum(ref.kind == "Pod" for ref in fleet.created)
        running = {role: RunningProbe(role, p.name, p.ip, p.pod.node_name) for role, p in probes.items()}
        executor = _Executor(kube, probes, shared.facts, options.timeout)
        points = _capture_points(shared.plan, probes, nodes)
        ips = [p.ip for p in probes.values() if p.ip]
        sniffer = early.sniffer_for(ips, _flow_sources(executor, shared.plan.steps))
        done = _round(executor, shared.plan.steps, points, ips, options, progress, decoding, sniffer)
        more = _shared_round(shared, done, running, lambda ev: _coverage_round(ev, uncovered)) if uncovered else []
        if more:
            extra = _round(executor, tuple(step for step, _ in more), points, ips, options, lambda step, obs: None,
                           decoding)
            done = _joined(done, extra, more)
        doubtful = _shared_round(shared, done, running, lambda ev: _settle_round(ev, unsettled)) if unsettled else []
        doubtful = _with_twins(shared.plan.steps, doubtful, done.observations) if doubtful else []
        if doubtful:
            time.sleep(max(0.0, launched + PROPAGATION_S - time.monotonic()))
            extra = _round(executor, tuple(step for step, _ in doubtful), points, ips, options,
                           lambda step, obs: None, decoding)
            done = _joined(done, extra, doubtful, _instead)
        kept = tuple(f"kubectl -n {p.namespace} exec -it {p.name} -- bash"
                     for p in (*probes.values(), *nodes.values())) if options.keep else ()
    captures = (*done.captures, *blind)
    return tuple(RunResult(shared.observations_of(i, done.observations), kept, launched - started, done.probe_seconds,
                           shared.captures_of(i, captures), shared.running_of(i, running), done.capture_seconds,
                           fleet.owner_fallbacks, pods_created) for i in range(len(jobs)))


def shared_steps(jobs: tuple[Job, ...]) -> tuple[Step, ...]:
    """The steps `run_many` runs for these jobs (a step they share once), for progress counts."""
    return _Shared.of(jobs).plan.steps


@dataclass(frozen=True)
class _Shared:
    """Jobs merged into one plan: `roles[i]` maps job i's probe roles to the shared ones, `keys[i]`
    its step keys to the shared steps' keys; `facts` gives each shared step the facts of a job that
    asked for it."""

    jobs: tuple[Job, ...]
    plan: Plan
    roles: tuple[dict[str, str], ...]
    keys: tuple[dict[str, str], ...]
    facts: dict[str, Facts]

    @classmethod
    def of(cls, jobs: tuple[Job, ...]) -> _Shared:
        probes: dict[tuple, PlannedProbe] = {}
        steps: dict[str, Step] = {}
        by_action: dict[tuple, tuple[str, int]] = {}  # (probe, action) -> the shared step's key, its first job
        roles, keys, facts = [], [], {}
        for i, job in enumerate(jobs):
            role_map = {p.role: _shared_probe(probes, p).role for p in job.plan.probes}
            key_map = {}
            for step in job.plan.steps:
                mine = replace(step, probe=role_map.get(step.probe, step.probe), action=_shared_action(step.action, role_map))
                same = (mine.probe, mine.action)
                earlier = by_action.get(same)
                key = earlier[0] if earlier and earlier[1] != i else \
                    step.key if step.key not in steps else f"{step.key}#{i}"
                if key not in steps:
                    steps[key] = replace(mine, key=key)
                    by_action.setdefault(same, (key, i))
                    facts[key] = job.facts
                key_map[step.key] = key
            roles.append(role_map)
            keys.append(key_map)
        notes = tuple(dict.fromkeys(n for job in jobs for n in job.plan.notes))
        capture = jobs[0].plan.capture if jobs else CaptureMode.OFF
        plan = Plan(tuple(probes.values()), tuple(steps.values()), notes, capture)
        return cls(tuple(jobs), plan, tuple(roles), tuple(keys), facts)

    def evidence(self, i: int, done: _Round, running: dict[str, RunningProbe]) -> Evidence:
        job = self.jobs[i]
        return Evidence(job.facts, job.plan, self.observations_of(i, done.observations),
                        self.captures_of(i, done.captures), self.running_of(i, running))

    def observations_of(self, i: int, observations: tuple[Observation, ...]) -> tuple[Observation, ...]:
        by_key = {o.step_key: o for o in observations}
        return tuple(replace(by_key[self.keys[i][s.key]], step_key=s.key) for s in self.jobs[i].plan.steps
                     if self.keys[i][s.key] in by_key)

    def running_of(self, i: int, running: dict[str, RunningProbe]) -> dict[str, RunningProbe]:
        return {mine: replace(running[theirs], role=mine) for mine, theirs in self.roles[i].items() if theirs in running}

    def captures_of(self, i: int, captures) -> tuple[Capture, ...]:
        """Job i's capture points: its own probes' (under its roles) and the nodes it captures on."""
        mine = {theirs: role for role, theirs in self.roles[i].items()}
        nodes = {p.node for p in self.jobs[i].plan.probes if p.purpose is ProbePurpose.NODE_CAPTURE}
        found = []
        for c in captures:
            if c.probe is not None and c.probe in mine:
                found.append(replace(c, point=f"probe {mine[c.probe]}", probe=mine[c.probe]))
            elif c.probe is None and c.node in nodes:
                found.append(c)
        return tuple(found)


def _shared_action(action, roles: dict[str, str]):
    """A ping to another probe names it by role: the shared one."""
    if isinstance(action, Ping) and action.to_probe:
        return replace(action, to_probe=roles.get(action.to_probe, action.to_probe))
    return action


def _shared_probe(probes: dict[tuple, PlannedProbe], p: PlannedProbe) -> PlannedProbe:
    """The shared probe for `p`: a traffic probe per namespace, labels, node and capture, a node
    capture probe per node (it sees the whole node, whichever namespace it runs in: the first plan's);
    a new one is named after p's role, made unique."""
    key = (None, (), p.node, p.purpose, False) if p.purpose is ProbePurpose.NODE_CAPTURE else \
        (p.namespace, p.copy_labels, p.node, p.purpose, p.capture)
    if key not in probes:
        taken = {q.role for q in probes.values()}
        role = p.role if p.role not in taken else next(f"{p.role[:36]}-{n}" for n in range(2, 999)
                                                      if f"{p.role[:36]}-{n}" not in taken)
        probes[key] = replace(p, role=role)
    return probes[key]


def _shared_round(shared: _Shared, done: _Round, running: dict[str, RunningProbe],
                  ask: Callable[[Evidence], list[tuple[Step, str]]]) -> list[tuple[Step, str]]:
    """Each job's answer to `ask` (the steps to run once more, with why), as shared steps (a step
    two jobs share runs once)."""
    more: dict[str, tuple[Step, str]] = {}
    for i in range(len(shared.jobs)):
        for step, why in ask(shared.evidence(i, done, running)):
            key = shared.keys[i][step.key]
            more.setdefault(key, (replace(step, key=key, probe=shared.roles[i].get(step.probe, step.probe)), why))
    return list(more.values())


def _round(executor: _Executor, steps: tuple[Step, ...], points: list[Point], ips: list[str], options: RunOptions,
           progress, decoding: DecoderProcess | None, sniffer: Sniffer | None = None) -> _Round:
    """The steps under capture at `points`; `sniffer`: round 1's, whose captures began while the
    probes started (None: a new one)."""
    began = time.monotonic()
    if sniffer is None:
        sniffer = Sniffer(ips, _flow_sources(executor, steps), max_seconds=options.timeout * 60, decoding=decoding)
    with sniffer:
        if points:
            sniffer.start(points)
        listening = time.monotonic()
        observations = _run_steps(executor, steps, options.workers, progress)
        probed = time.monotonic()
        captures = clocks.aligned(sniffer.stop()) if points else ()
    return _Round(observations, captures, probed - listening, (listening - began) + (time.monotonic() - probed))


class _EarlyStart:
    """`launch_all`'s `on_change`: a probe goes to work as soon as it runs, while the others still
    start. A traffic probe opens its command channel; once every traffic probe has its IP (round
    1's capture filter names them all), each capture point starts listening as soon as its probe
    runs (a node's capture probe, on the host network, usually runs first). Round 1's steps still
    wait until every capture listens. Leaving it stops the captures no round took over."""

    def __init__(self, plan: Plan, options: RunOptions, decoding: DecoderProcess | None):
        self._plan, self._options, self._decoding = plan, options, decoding
        self._traffic = {p.role for p in plan.probes if p.purpose is ProbePurpose.TRAFFIC}
        self._flowing = _flowing(plan.steps)
        self._sniffer: Sniffer | None = None

    def __enter__(self) -> _EarlyStart:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._sniffer is not None:
            self._sniffer.__exit__(*exc_info)

    def __call__(self, starting: Starting) -> None:
        traffic = {role: probe for role, probe in starting.running.items() if role in self._traffic}
        for probe in traffic.values():
            probe.connect()
        if self._plan.capture is CaptureMode.OFF or not self._traffic <= starting.ips.keys():
            return
        if self._sniffer is None:
            ips = [starting.ips[role] for role in sorted(self._traffic)]
            tracked = [starting.ips[role] for role in sorted(self._traffic & self._flowing)]
            self._sniffer = Sniffer(ips, tracked, max_seconds=self._options.timeout * 60, decoding=self._decoding)
        nodes = {role: probe for role, probe in starting.running.items() if role not in self._traffic}
        self._sniffer.begin(_capture_points(self._plan, traffic, nodes))

    def sniffer_for(self, ips: list[str], tracked: list[str]) -> Sniffer | None:
        """The captures begun, for round 1, if they filter on these probes (they do: a pod keeps its
        IP); else they stop and None."""
        early, self._sniffer = self._sniffer, None
        if early is not None and (early.ips, early.tracked) == (frozenset(ips), frozenset(tracked)):
            return early
        if early is not None:
            early.__exit__(None, None, None)
        return None


def _coverage_round(ev: Evidence, uncovered: Uncovered) -> list[tuple[Step, str]]:
    """The steps to run once more with their `until_covered` attempts, each with why: a ready
    backend none of its connections reached yet, or captures that cannot tell the backends apart.
    A round's attempts run at once, so it costs at most one --timeout (plus restarting the capture)."""
    more = []
    for step in ev.plan.steps:
        if isinstance(step.action, TcpConnect) and step.action.until_covered:
            left = uncovered(ev, step)
            if left is None or left:
                again = replace(step, action=replace(step.action, attempts=step.action.until_covered, until_covered=0))
                more.append((again, f"not reached yet: {', '.join(left)}" if left
                             else "the captures cannot tell which backend each connection reached"))
    return more


def _settle_round(ev: Evidence, unsettled: Unsettled) -> list[tuple[Step, str]]:
    """The steps to look at again once the probes have been known long enough, each with why."""
    again = []
    for step in ev.plan.steps:
        obs = ev.observed(step.key)
        why = unsettled(ev, step) if obs and obs.result else None
        if why:
            again.append((_look_again(step, obs), why))
    return again


def _look_again(step: Step, obs: Observation) -> Step:
    """A step as it is looked at again: a connection step with as many attempts as it may make in
    all its rounds, and no fewer than it made (the new look alone must cover the Service's backends
    as both rounds would have), started SETTLE_SPACING_S apart."""
    if not isinstance(step.action, TcpConnect):
        return step
    planned = step.action.attempts + step.action.until_covered
    return replace(step, action=replace(step.action, attempts=max(len(obs.result), planned), until_covered=0,
                                        spacing=SETTLE_SPACING_S))


def _with_twins(steps: tuple[Step, ...], again: list[tuple[Step, str]],
                observations: tuple[Observation, ...]) -> list[tuple[Step, str]]:
    """The steps looked at again, and with them each step whose packets the captures cannot tell
    apart from theirs: the same probe to the same address (the probe of the source's node is the
    source itself, and repeats its pod IP and Service IP steps). Judged on the first round, its
    path would follow the connections set aside with the other's."""
    looked = {_address(step): (step, why) for step, why in again if _address(step)}
    keys = {step.key for step, _ in again}
    results = {o.step_key: o for o in observations if o.result}
    twins = []
    for step in steps:
        other, why = looked.get(_address(step), (None, ""))
        if other is not None and step.key not in keys and step.key in results:
            twins.append((_look_again(step, results[step.key]),
                          f"{other.title or other.key}: {why} (from this probe to this address too: the captures "
                          f"cannot tell its connections from these)"))
    return again + twins


def _address(step: Step) -> tuple | None:
    """Where a step's requests go, as the captures match them: probe, kind and destination."""
    action = step.action
    if isinstance(action, TcpConnect):
        return step.probe, type(action), action.ip, action.port
    if isinstance(action, Ping):
        return step.probe, Ping, action.to_probe or action.ip, action.size
    return None


def _joined(first: _Round, extra: _Round, why: list[tuple[Step, str]],
            combine: Callable[[Observation, Observation, str, int], Observation] | None = None) -> _Round:
    """The rounds as one: each repeated step's observations `combine`d (by default its results and
    log after the first round's; told the new round's number), each capture point's packets and
    tracked connections joined, where each round's packets start recorded."""
    combine = combine or _more_results
    again = {o.step_key: o for o in extra.observations}
    reasons = {step.key: reason for step, reason in why}
    observations = tuple(combine(o, again[o.step_key], reasons[o.step_key], first.count) if o.step_key in again
                         else o for o in first.observations)
    later = {c.point: c for c in extra.captures}
    captures = tuple(_more_packets(c, later[c.point]) if c.point in later else c for c in first.captures)
    return _Round(observations, captures, first.probe_seconds + extra.probe_seconds,
                  first.capture_seconds + extra.capture_seconds, first.count + extra.count)


def _more_results(first: Observation, extra: Observation, why: str, _round: int) -> Observation:
    """An errored round adds its error to the log, never results: the first round's stand alone."""
    log = (*first.log, f"one more round ({why}):", *extra.log)
    seconds = first.seconds + extra.seconds
    if extra.error is not None or first.error is not None:
        return replace(first, log=log, seconds=seconds)
    return Observation(first.step_key, (*first.result, *extra.result), None, log, seconds)


def _instead(first: Observation, extra: Observation, why: str, new_round: int) -> Observation:
    """A step looked at again is judged on the new look alone (its results, and its connections in
    the captures from `new_round` on); the log keeps what was set aside. An errored look leaves the
    first results standing."""
    log = (*first.log, f"set aside: {why} while the probes were new; looked at again {PROPAGATION_S:g} s after "
           f"they started:", *extra.log)
    seconds = first.seconds + extra.seconds
    if extra.error is not None or first.error is not None:
        return replace(first, log=log, seconds=seconds)
    return Observation(first.step_key, extra.result, None, log, seconds, new_round, why)


def _more_packets(first: Capture, extra: Capture) -> Capture:
    """A point blind in either round is blind: the packets of the round it saw would leave the
    other round's connections unseen there, as if none had crossed it."""
    if first.blind or extra.blind:
        return first if first.blind else extra
    rounds = (*(first.rounds or (0,)), len(first.packets))
    # The same tcpdump command at the same point writes the same pcap header: the second round's
    # records follow the first's in one file.
    return replace(first, packets=first.packets + extra.packets, inventory=extra.inventory or first.inventory,
                   nat=first.nat + extra.nat,
                   pcap=first.pcap + extra.pcap[_PCAP_HEADER:] if first.pcap else extra.pcap, rounds=rounds)


def _flow_sources(executor: _Executor, steps: tuple[Step, ...]) -> list[str]:
    """The addresses of the probes whose steps open TCP or UDP flows: the nodes' conntrack entries
    a verdict reads (where a Service connection was sent) start there; pings leave none it reads."""
    flowing = _flowing(steps)
    return [probe.ip for role, probe in executor.probes.items() if role in flowing and probe.ip]


def _flowing(steps: tuple[Step, ...]) -> set[str]:
    """The roles of the probes whose steps open TCP or UDP flows."""
    return {step.probe for step in steps if isinstance(step.action, (TcpConnect, UdpExchange, DnsQuery))}


def observe_without_probes(kube: Kube, plan: Plan, facts: Facts, options: RunOptions,
                           why: str) -> tuple[Observation, ...]:
    """When the probes could not run: the steps that need none (the backends' own socket tables),
    and for every other step the reason it did not run, so the API-only layers still report."""
    executor = _Executor(kube, {}, {step.key: facts for step in plan.steps}, options.timeout)
    return tuple(executor.observe(step) if step.probe is None else
                 Observation(step.key, None, f"the probes could not run: {why}") for step in plan.steps)


def _run_steps(executor: _Executor, steps: tuple[Step, ...], workers: int, progress) -> tuple[Observation, ...]:
    observations = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(executor.observe, step): step for step in steps}
        for future in as_completed(futures):
            observations.append(future.result())
            progress(futures[future], observations[-1])
    order = {s.key: i for i, s in enumerate(steps)}
    return tuple(sorted(observations, key=lambda o: order[o.step_key]))


def _traffic_spec(p: PlannedProbe, image: str, capture: bool) -> ProbeSpec:
    role = ProbeRole.SOURCE if p.copy_labels else ProbeRole.CLIENT
    caps = frozenset({Capability.NET_RAW}) if capture else frozenset()  # tcpdump, and ping without ping_group_range
    return ProbeSpec(p.role, p.namespace, role, p.node, image, caps, impersonate_labels=p.copy_labels)


def _capture_spec(p: PlannedProbe, image: str) -> ProbeSpec:
    """tcpdump needs NET_RAW; reading the node's connection tracking table needs NET_ADMIN."""
    return ProbeSpec(p.role, p.namespace, ProbeRole.CAPTURE, p.node, image,
                     frozenset({Capability.NET_RAW, Capability.NET_ADMIN}), host_network=True)


def _launch(fleet: ProbeFleet, plan: Plan, options: RunOptions, on_change: Callable[[Starting], None]):
    """The traffic probes (required), the node capture probes (optional unless --capture strict),
    and a blind Capture for every capture point the cluster refused, with the reason; `on_change`
    hears of each probe that runs while the others still start."""
    traffic = [p for p in plan.probes if p.purpose is ProbePurpose.TRAFFIC]
    capturing = [p for p in plan.probes if p.purpose is ProbePurpose.NODE_CAPTURE]
    specs = [_traffic_spec(p, options.image, p.capture) for p in traffic]
    optional = [_capture_spec(p, options.image) for p in capturing]
    blind: list[Capture] = []
    try:
        launch = fleet.launch_all(specs, optional, on_change)
    except ProbeLaunchError as exc:
        if not (_capture_refused(exc) and plan.capture is CaptureMode.AUTO):
            _explain(exc, plan)
            raise
        blind = [Capture(f"probe {p.role}", p.node, p.role, blind=f"no capture in the probe: {exc.server_message}")
                 for p in traffic if p.capture]
        launch = fleet.launch_all([replace(s, capabilities=frozenset()) for s in specs], optional, on_change)
    if launch.failures and plan.capture is CaptureMode.STRICT:
        failure = next(iter(launch.failures.values()))
        _explain(failure, plan)
        raise failure
    by_role = {p.role: p for p in capturing}
    blind += [Capture(by_role[name].node, by_role[name].node, blind=f"no capture on the node: {exc.message}")
              for name, exc in launch.failures.items()]
    probes = {p.role: launch.probes[p.role] for p in traffic}
    nodes = {p.role: launch.probes[p.role] for p in capturing if p.role in launch.probes}
    return probes, nodes, tuple(blind)


def _capture_refused(exc: ProbeLaunchError) -> bool:
    return exc.reason is LaunchFailure.POD_SECURITY and bool(exc.spec.capabilities)


def _explain(exc: ProbeLaunchError, plan: Plan) -> None:
    """Add to the error's hint which layers it costs, or how to go on without capture."""
    if exc.spec.capabilities and plan.capture is CaptureMode.STRICT:
        extra = "--capture strict needs probes with NET_RAW and hostNetwork; use --capture auto to go on without " \
                "the blocked hops, or --capture-namespace for a namespace that admits them"
    else:
        extra = _cost(plan, exc.spec.name)
    exc.hint = "; ".join(filter(None, (exc.hint, extra)))


def _capture_points(plan: Plan, probes: dict[str, Probe], nodes: dict[str, Probe]) -> list[Point]:
    planned = {p.role: p for p in plan.probes}
    pods = [Point(f"probe {role}", probe.pod.node_name, probe, role) for role, probe in probes.items()
            if planned[role].capture and probe.spec.capabilities]
    return pods + [Point(probe.pod.node_name or planned[role].node, probe.pod.node_name, probe)
                   for role, probe in nodes.items()]


def _cost(plan: Plan, probe: str) -> str:
    """Which layers a probe that could not run takes down with it, for the error's hint."""
    layers = sorted({step.layer.value for step in plan.steps if step.probe == probe})
    return f"without the {probe} probe these layers cannot run: {', '.join(layers)}" if layers else ""


class _Executor:
    """Runs steps in their probes; `facts` by step key (a shared run's steps come from several jobs)."""

    def __init__(self, kube: Kube, probes: dict[str, Probe], facts: dict[str, Facts], timeout: float):
        self.kube, self.probes, self.facts, self.timeout = kube, probes, facts, timeout
        self._resolv: dict[str, object] = {}
        self._lock = threading.Lock()

    def observe(self, step: Step) -> Observation:
        log: list[str] = []
        started = time.monotonic()
        try:
            result = self._execute(step, log)
        except (NetdoctorError, OSError, ValueError) as exc:
            log.append(f"{type(exc).__name__}: {exc}")
            return Observation(step.key, None, str(exc), tuple(log), time.monotonic() - started)
        log.append(f"{step.title or step.key}: {_summary(result)}")
        return Observation(step.key, result, None, tuple(log), time.monotonic() - started)

    def _execute(self, step: Step, log: list[str]):
        action, facts = step.action, self.facts[step.key]
        if isinstance(action, InspectListeners):
            return self._listeners(facts, action, log)
        probe = self.probes[step.probe]
        log.append(f"in {probe.namespace}/{probe.name}")
        if isinstance(action, UdpExchange):
            query = commands.dns_query(action.dns_name, "A") if action.dns_name else None
            command = commands.udp_command(action.ip, action.port, self.timeout, action.attempts, query, action.spacing)
            result = probe.exec(command, commands.exec_deadline(self.timeout, stagger=action.spacing * action.attempts))
            return tuple(commands.parse_udp(action.ip, action.port, result, query))
        if isinstance(action, TcpConnect):
            return tuple(probe.tcp_connect(action.ip, action.port, self.timeout, action.attempts, action.spacing))
        if isinstance(action, Ping):
            ip = self.probes[action.to_probe].ip if action.to_probe else action.ip
            return probe.ping(ip, action.size, action.dont_fragment, self.timeout)
        if isinstance(action, ReadResolvConf):
            return self._source_conf(facts) if action.pod else self._resolv_conf(probe)
        if isinstance(action, DnsQuery):
            return self._dns(facts, probe, action, log)
        raise ValueError(f"unknown action {action!r}")

    def _listeners(self, facts: Facts, action: InspectListeners, log: list[str]) -> ListenerTable:
        """The pod's socket table, read by `cat` in the first of the step's containers that has it
        (the one declaring the port comes first; the sockets are the pod's, shared by them all)."""
        pod = next(p for p in facts.backends if p.name == action.pod)
        tried = []
        for container in action.containers or (None,):
            table = listeners_of(self.kube, pod, container, protocol=action.protocol)
            log.append(f"{pod.name}/{container or '?'}: cat /proc/net/{action.protocol.lower()}: {table.status.value}")
            if table.status is not ListenerStatus.NO_TOOL:
                return table
            tried.append(container or "?")
        return ListenerTable(ListenerStatus.NO_TOOL, detail=f"no container of {pod.name} can run cat "
                             f"({', '.join(tried)}: distroless images?)")

    def _resolv_conf(self, probe: Probe):
        with self._lock:
            if probe.name not in self._resolv:
                self._resolv[probe.name] = probe.resolv_conf()
            return self._resolv[probe.name]

    def _source_conf(self, f: Facts) -> ResolvConf:
        """The --from pod's own resolv.conf, read once by exec into it; where that fails (no `cat`
        in a distroless image, no exec right), what its dnsPolicy and dnsConfig make the kubelet
        write, saying so. The DNS steps resolve with it: the source's search list and ndots."""
        key = f"--from {f.source_namespace}/{f.source_pod}"
        with self._lock:
            if key not in self._resolv:
                try:
                    self._resolv[key] = self._read_source_conf(f)
                except NetdoctorError as exc:
                    self._resolv[key] = exc
            found = self._resolv[key]
        if isinstance(found, NetdoctorError):
            raise found
        return found

    def _read_source_conf(self, f: Facts) -> ResolvConf:
        try:
            result = self.kube.exec(f.source_namespace, f.source_pod, commands.resolv_conf_command(),
                                    timeout=commands.exec_deadline(2.0))
            return commands.parse_resolv_conf(result)
        except NetdoctorError as exc:
            failure = f"cannot read pod/{f.source_pod}'s /etc/resolv.conf: {exc.message}"
        view = f.source_dns
        if view is None or view.derived is None:
            raise ProbeError(f"{failure}; nor can it be derived from the pod's spec: "
                             f"{view.basis if view else 'not read'}")
        return replace(view.derived, derived=f"{failure}; derived from its {view.basis}")

    def _dns(self, facts: Facts, probe: Probe, action: DnsQuery, log: list[str]):
        conf = None
        if action.server is None or action.search:
            conf = self._source_conf(facts) if facts.source_pod else self._resolv_conf(probe)
        server = action.server or (conf.nameservers[0] if conf and conf.nameservers else None)
        if server is None:
            raise ValueError("the source's resolv.conf names no nameserver")
        names = commands.search_candidates(action.name, conf) if action.search else (action.name,)
        results = []
        for name in names:
            found = probe.dns_query(server, name, action.rdtype, self.timeout, action.attempts)
            log.append(f"{name} @{server}: " + ", ".join(r.outcome.value for r in found))
            results.extend(found)
            if found and found[-1].outcome in (DnsOutcome.ANSWER, DnsOutcome.TIMEOUT, DnsOutcome.SERVFAIL):
                break
        return tuple(results)


def _summary(result) -> str:
    items = result if isinstance(result, tuple) else (result,)
    return ", ".join(getattr(getattr(r, "outcome", None), "value", type(r).__name__) for r in items) or "nothing"
