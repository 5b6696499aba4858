"""The probe stage: launch the plan's probes, run its steps in parallel threads, record each
step's Observation with a buffered log. A step's exception becomes an Observation with `error`
(so the judge reports ERROR), never a traceback.

Called by checkcmd between plan and judge; `progress` is told about each finished step so the
terminal can show live progress. Only this module touches probes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable

from netdoctor import probecmds
from netdoctor.errors import NetdoctorError
from netdoctor.kube import Kube
from netdoctor.model import (
    DnsQuery, Facts, InspectListeners, Observation, Ping, Plan, ReadResolvConf, Step, TcpConnect,
)
from netdoctor.observations import DnsOutcome
from netdoctor.probes import DEFAULT_IMAGE, Probe, ProbeFleet, ProbeLaunchError, ProbeRole, ProbeSpec, listeners_of


@dataclass(frozen=True)
class RunOptions:
    timeout: float = 3.0  # per network probe
    image: str = DEFAULT_IMAGE
    keep: bool = False
    workers: int = 16


@dataclass(frozen=True)
class RunResult:
    observations: tuple[Observation, ...]
    kept: tuple[str, ...]  # "kubectl exec" lines for --keep
    launch_seconds: float = 0.0  # until every probe ran
    probe_seconds: float = 0.0  # running the steps


def run(kube: Kube, plan: Plan, facts: Facts, options: RunOptions,
        progress: Callable[[Step, Observation], None] = lambda step, obs: None) -> RunResult:
    specs = [ProbeSpec(p.role, p.namespace, ProbeRole.SOURCE if p.copy_labels else ProbeRole.CLIENT, p.node,
                       options.image, impersonate_labels=p.copy_labels) for p in plan.probes]
    started = time.monotonic()
    with ProbeFleet(kube, run_timeout=options.timeout * 60, keep=options.keep) as fleet:
        try:
            probes = {spec.name: probe for spec, probe in zip(specs, fleet.launch(specs))}
        except ProbeLaunchError as exc:
            exc.hint = "; ".join(filter(None, (exc.hint, _cost(plan, exc.spec.name))))
            raise
        launched = time.monotonic()
        executor = _Executor(kube, probes, facts, options.timeout)
        observations = []
        with ThreadPoolExecutor(max_workers=options.workers) as pool:
            futures = {pool.submit(executor.observe, step): step for step in plan.steps}
            for future in as_completed(futures):
                observations.append(future.result())
                progress(futures[future], observations[-1])
        probed = time.monotonic()
        kept = tuple(f"kubectl -n {p.namespace} exec -it {p.name} -- bash" for p in probes.values()) if options.keep else ()
    order = {s.key: i for i, s in enumerate(plan.steps)}
    return RunResult(tuple(sorted(observations, key=lambda o: order[o.step_key])), kept,
                     launched - started, probed - launched)


def _cost(plan: Plan, probe: str) -> str:
    """Which layers a probe that could not run takes down with it, for the error's hint."""
    layers = sorted({step.layer.value for step in plan.steps if step.probe == probe})
    return f"without the {probe} probe these layers cannot run: {', '.join(layers)}" if layers else ""


class _Executor:
    def __init__(self, kube: Kube, probes: dict[str, Probe], facts: Facts, timeout: float):
        self.kube, self.probes, self.facts, self.timeout = kube, probes, facts, timeout
        self._resolv: dict[str, object] = {}
        self._lock = threading.Lock()

    def observe(self, step: Step) -> Observation:
        log: list[str] = []
        try:
            result = self._execute(step, log)
        except (NetdoctorError, OSError, ValueError) as exc:
            log.append(f"{type(exc).__name__}: {exc}")
            return Observation(step.key, None, str(exc), tuple(log))
        log.append(f"{step.title or step.key}: {_summary(result)}")
        return Observation(step.key, result, None, tuple(log))

    def _execute(self, step: Step, log: list[str]):
        action = step.action
        if isinstance(action, InspectListeners):
            pod = next(p for p in self.facts.backends if p.name == action.pod)
            return listeners_of(self.kube, pod)
        probe = self.probes[step.probe]
        log.append(f"in {probe.namespace}/{probe.name}")
        if isinstance(action, TcpConnect):
            return tuple(probe.tcp_connect(action.ip, action.port, self.timeout, action.attempts))
        if isinstance(action, Ping):
            ip = self.probes[action.to_probe].ip if action.to_probe else action.ip
            return probe.ping(ip, action.size, action.dont_fragment, self.timeout)
        if isinstance(action, ReadResolvConf):
            if action.pod:
                result = self.kube.exec(self.facts.source_namespace, action.pod, probecmds.resolv_conf_command(),
                                        timeout=probecmds.exec_deadline(2.0))
                return probecmds.parse_resolv_conf(result)
            return self._resolv_conf(probe)
        if isinstance(action, DnsQuery):
            return self._dns(probe, action, log)
        raise ValueError(f"unknown action {action!r}")

    def _resolv_conf(self, probe: Probe):
        with self._lock:
            if probe.name not in self._resolv:
                self._resolv[probe.name] = probe.resolv_conf()
            return self._resolv[probe.name]

    def _dns(self, probe: Probe, action: DnsQuery, log: list[str]):
        conf = self._resolv_conf(probe) if action.server is None or action.search else None
        server = action.server or (conf.nameservers[0] if conf and conf.nameservers else None)
        if server is None:
            raise ValueError("the probe's resolv.conf names no nameserver")
        names = probecmds.search_candidates(action.name, conf) if action.search else (action.name,)
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
