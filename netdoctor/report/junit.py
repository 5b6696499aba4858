"""`-o junit`: reports as JUnit XML for CI dashboards, valid against the common junit-10.xsd.

One <testsuite> per target, named `NAMESPACE/TARGET` (`shop/svc/api`), with its timestamp (UTC),
time and totals; one <testcase> per check, its classname `NAMESPACE/TARGET.LAYER` (a dashboard
groups the cases by target, then by layer), its name `CHECK-ID title`, its time the wall time of
its steps. FAIL → <failure>, ERROR → <error>, SKIP → <skipped>; WARN passes with the message in
system-out. A failure's text holds the check's message and evidence, then the target's verdict:
where the packet was lost, the fix and the next commands. Each suite's <properties> say what was
checked, from where, and what the cluster is made of (cluster.cni, cluster.proxy, …).

`render(report)` serves `check -o junit`; `document(suites)` takes any number of suites, so a run
of many targets or expectations renders one file (`suite(report)` makes a target's).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from netdoctor import __version__
from netdoctor.model import CheckResult, ClusterKind, Report, State

OUTCOME = {State.FAIL: "failure", State.ERROR: "error", State.SKIP: "skipped"}


@dataclass(frozen=True)
class Case:
    classname: str
    name: str
    seconds: float
    state: State
    message: str = ""
    kind: str = ""  # the failure's type: the check's cause
    text: str = ""  # the failure's or error's body; a warning's system-out


@dataclass(frozen=True)
class Suite:
    name: str
    started_at: datetime | None
    seconds: float
    cases: tuple[Case, ...]
    properties: tuple[tuple[str, str], ...] = ()


def render(report: Report) -> str:
    return document([suite(report)], f"netdoctor check {report.namespace}/{report.target}")


def suite(report: Report) -> Suite:
    """A target's suite: a case per check of every layer, in runbook order."""
    where = f"{report.namespace}/{report.target}"
    verdict = _verdict(report)
    cases = tuple(_case(f"{where}.{layer.layer.value}", c, verdict) for layer in report.layers for c in layer.checks)
    properties = (("target", report.target), ("namespace", report.namespace), ("source", report.source),
                  ("state", report.state.value), *(_cluster(report.cluster) if report.cluster else ()))
    return Suite(where, report.started_at, report.duration_s, cases, properties)


def document(suites: Sequence[Suite], name: str) -> str:
    """The <testsuites> file: every suite, and the totals over them."""
    root = ET.Element("testsuites", name=name, time=_seconds(sum(s.seconds for s in suites)),
                      tests=str(sum(len(s.cases) for s in suites)),
                      failures=str(sum(_count(s, State.FAIL) for s in suites)),
                      errors=str(sum(_count(s, State.ERROR) for s in suites)))
    for s in suites:
        root.append(_suite_element(s))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite_element(s: Suite) -> ET.Element:
    element = ET.Element("testsuite", name=s.name, tests=str(len(s.cases)), failures=str(_count(s, State.FAIL)),
                         errors=str(_count(s, State.ERROR)), skipped=str(_count(s, State.SKIP)), time=_seconds(s.seconds))
    if s.started_at:  # JUnit's timestamp has no zone: UTC
        element.set("timestamp", s.started_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    properties = ET.SubElement(element, "properties")
    for key, value in (*s.properties, ("netdoctor.version", __version__)):
        ET.SubElement(properties, "property", name=key, value=value)
    for case in s.cases:
        element.append(_case_element(case))
    return element


def _case_element(case: Case) -> ET.Element:
    element = ET.Element("testcase", classname=case.classname, name=case.name, time=_seconds(case.seconds))
    if case.state is State.WARN:
        ET.SubElement(element, "system-out").text = f"WARN: {case.message}\n{case.text}".rstrip()
    elif case.state in OUTCOME:
        child = ET.SubElement(element, OUTCOME[case.state], message=case.message)
        if case.state is State.FAIL:
            child.set("type", case.kind or "fail")
        if case.text and case.state is not State.SKIP:
            child.text = case.text
    return element


def _case(classname: str, c: CheckResult, verdict: str) -> Case:
    body = "\n".join((*c.evidence, *c.log))
    message = f"consequence of {c.explained_by}: {c.message}" if c.explained_by else c.message
    if c.state in (State.FAIL, State.ERROR):
        body = "\n\n".join(filter(None, (body, verdict)))
    return Case(classname, f"{c.check_id} {c.title}".strip(), c.duration_s, c.state, message, c.cause or "", body)


def _verdict(report: Report) -> str:
    """The target's diagnosis as the text report ends: verdict, where, fix, next commands."""
    d = report.diagnosis
    at = f" at {d.layer.value}" if d.layer else ""
    lines = [f"verdict: {d.state.value.upper()}{at}: {d.headline}" + (f" ({d.check_id})" if d.check_id else "")]
    if d.consequences:
        lines.append(f"consequences: {', '.join(d.consequences)} fail because of this")
    if d.path:
        lines.append(f"{'where' if d.path.outcome.value != 'delivered' else 'path'}: {d.path.summary}")
    if d.remediation:
        lines.append(f"fix: {d.remediation}")
    lines += [f"  $ {command}" for command in d.commands]
    return "\n".join(lines)


def _cluster(kind: ClusterKind) -> tuple[tuple[str, str], ...]:
    return (("cluster.cni", kind.cni.name.value), ("cluster.cni.overlay", kind.cni.overlay.value),
            ("cluster.cni.confidence", kind.cni.confidence.value), ("cluster.proxy", kind.proxy.name.value),
            ("cluster.proxy.mode", kind.proxy.mode.value), ("cluster.proxy.confidence", kind.proxy.confidence.value))


def _count(s: Suite, state: State) -> int:
    return sum(case.state is state for case in s.cases)


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.3f}"
