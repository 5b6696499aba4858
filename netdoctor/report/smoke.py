"""A finished SmokeReport in text, JSON, Markdown or JUnit. Called by check.smoke_command.

Text: one line per expectation (state, where in the file, what, the finding), the denial's capture
confirmation, and for what did not hold the check's diagnosis (layer, cause, hop, fix); then the
totals. JSON (schema "netdoctor.smoke/v1"): {schema, file, state, duration_s, probes, totals{pass,
warn, fail, error}, results: [{kind, where, line, name, title, state, message, evidence, confirmed,
diagnosis (as in netdoctor.check/v1, or null), reports: [netdoctor.check/v1 documents]}]}. JUnit
(report.junit, valid against junit-10.xsd): one testsuite per expectation, its case the expectation
(classname smoke.KIND) with the diagnosis and the next commands in the failure text; a Service's
suite also holds its check's cases.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from netdoctor.model import Diagnosis, ExpectationResult, SmokeReport, State

SCHEMA = "netdoctor.smoke/v1"
STYLE = {State.PASS: "green", State.WARN: "yellow", State.FAIL: "bold red", State.ERROR: "magenta", State.SKIP: "dim"}


def _totals(report: SmokeReport) -> dict[str, int]:
    return {s.value: sum(r.state is s for r in report.results) for s in (State.PASS, State.WARN, State.FAIL, State.ERROR)}


def _diagnosis_lines(d: Diagnosis | None) -> list[str]:
    if d is None:
        return []
    where = f" at {d.layer.value}" if d.layer else ""
    lines = [f"{d.state.value.upper()}{where}: {d.headline}" + (f" ({d.check_id}" + (f" {d.cause}" if d.cause else "")
                                                                  + ")" if d.check_id else "")]
    if d.path and d.path.summary:
        lines.append(f"where: {d.path.summary}")
    if d.remediation:
        lines.append(f"fix: {d.remediation}")
    lines += [f"$ {c}" for c in d.commands]
    return lines


def text(report: SmokeReport, console: Console, verbose: bool = False) -> None:
    from netdoctor.report.text import picture

    for r in report.results:
        e = r.expectation
        label = f"{e.where} (line {e.line})"
        console.print(f"[{STYLE[r.state]}]{r.state.value.upper():5}[/] {escape(label)} {e.kind.value}: "
                      f"{escape(e.name or e.title)} — {escape(r.message)}", soft_wrap=True)
        if r.confirmed:
            console.print(f"      {escape(r.confirmed)}", soft_wrap=True)
        shown = verbose or r.state in (State.FAIL, State.ERROR, State.WARN)
        for line in r.evidence if shown else ():
            console.print(f"[dim]      {escape(line)}[/]", soft_wrap=True)
        if r.diagnosis and r.state is not State.PASS:
            for line in _diagnosis_lines(r.diagnosis):
                console.print(f"      {escape(line)}", soft_wrap=True)
            if r.diagnosis.path and r.diagnosis.path.hops:
                console.print(picture(r.diagnosis.path, console.width))
    totals = _totals(report)
    console.print()
    console.print(f"[{STYLE[report.state]}]{report.state.value.upper()}[/]: {len(report.results)} expectations in "
                  f"{escape(report.file)}: " + ", ".join(f"{n} {s}" for s, n in totals.items() if n) +
                  f" ({report.duration_s:.1f}s, {report.probes} probe pods)")


def document(report: SmokeReport) -> dict:
    from netdoctor.report.json import document as check_document

    return {
        "schema": SCHEMA,
        "file": report.file,
        "state": report.state.value,
        "duration_s": round(report.duration_s, 3),
        "probes": report.probes,
        "totals": _totals(report),
        "results": [_result(r, check_document) for r in report.results],
    }


def _result(r: ExpectationResult, check_document) -> dict:
    e = r.expectation
    d = r.diagnosis
    return {
        "kind": e.kind.value, "where": e.where, "line": e.line, "name": e.name or None, "title": e.title,
        "state": r.state.value, "message": r.message, "evidence": list(r.evidence), "confirmed": r.confirmed,
        "diagnosis": None if d is None else {
            "state": d.state.value, "layer": d.layer.value if d.layer else None, "check_id": d.check_id,
            "cause": d.cause, "headline": d.headline, "remediation": d.remediation, "commands": list(d.commands),
            "hop": d.path.summary if d.path else None,
            "lost_at": d.path.hops[d.path.at].label if d.path and d.path.at is not None and d.path.at < len(d.path.hops)
            else None},
        "reports": [check_document(report) for report in r.reports],
    }


def to_json(report: SmokeReport) -> str:
    from netdoctor import schemas

    return schemas.dump(document(report))


def to_markdown(report: SmokeReport) -> str:
    from netdoctor.report.markdown import ICON

    out = [f"### netdoctor smoke `{report.file}` — {ICON[report.state]} {report.state.value.upper()}", "",
           "| | Expectation | Line | Finding |", "|---|---|---|---|"]
    for r in report.results:
        e = r.expectation
        finding = r.message + (f"; {r.confirmed}" if r.confirmed else "")
        out.append(f"| {ICON[r.state]} | {e.kind.value}: {e.name or e.title} | {e.line} | {finding.replace('|', '/')} |")
    for r in report.results:
        if r.diagnosis and r.state is not State.PASS:
            out += ["", f"<details><summary>{r.expectation.where}: {r.expectation.title}</summary>", "", "```",
                    *_diagnosis_lines(r.diagnosis), *r.evidence, "```", "</details>"]
    return "\n".join(out) + "\n"


def to_junit(report: SmokeReport) -> str:
    """A testsuite per expectation (`flows[3] frontend must not touch db`), its case the
    expectation; a Service's suite also holds its check's cases. The failure text is the diagnosis."""
    from netdoctor.report import junit

    suites = []
    for r in report.results:
        e = r.expectation
        where = f"{e.where} {e.name or e.title}"
        body = "\n".join((*_diagnosis_lines(r.diagnosis), *r.evidence, *([r.confirmed] if r.confirmed else [])))
        case = junit.Case(f"smoke.{e.kind.value}", f"{e.title} (line {e.line})", 0.0, r.state, r.message,
                          (r.diagnosis.cause or "") if r.diagnosis else "", body)
        checks = junit.suite(r.reports[0]).cases if e.kind.value == "healthy" and r.reports else ()
        seconds = r.reports[0].duration_s if e.kind.value == "healthy" and r.reports else 0.0
        properties = (("file", report.file), ("line", str(e.line)), ("kind", e.kind.value), ("state", r.state.value),
                      *((("confirmed", r.confirmed),) if r.confirmed else ()))
        suites.append(junit.Suite(where, r.reports[0].started_at if r.reports else None, seconds, (case, *checks),
                                  properties))
    return junit.document(suites, f"netdoctor smoke {report.file}")


def render(report: SmokeReport, fmt: str, env, verbose: bool = False) -> None:
    if fmt == "text":
        text(report, env.console(), verbose)
        return
    env.stdout.write({"json": to_json, "markdown": to_markdown, "junit": to_junit}[fmt](report))
    env.stdout.flush()
