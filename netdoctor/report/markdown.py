"""`-o markdown`: a Report to paste into an incident channel: verdict first, then a layer table,
then the evidence of what did not pass."""

from __future__ import annotations

from netdoctor.model import HopPath, Report, State
from netdoctor.report import cluster, marks

ICON = {State.PASS: "✅", State.WARN: "⚠️", State.FAIL: "❌", State.ERROR: "💥", State.SKIP: "⏭️"}


def render(report: Report) -> str:
    d = report.diagnosis
    out = [f"### netdoctor: `{report.target}` in `{report.namespace}` — {ICON[d.state]} {d.state.value.upper()}", "",
           f"**{d.headline}**", "", f"Source: {report.source}"]
    if report.cluster:
        out += ["", f"Cluster: {cluster.header(report.cluster)}", "", "<details><summary>How the CNI and the Service "
                "proxy were told</summary>", "", "```", *report.cluster.cni.evidence, *report.cluster.proxy.evidence,
                "```", "</details>"]
    if d.path:
        out += ["", *_path(d.path)]
    if d.remediation:
        out += ["", f"Fix: {d.remediation}"]
    if d.commands:
        out += ["", "Next:", "```", *d.commands, "```"]
    out += ["", "| Layer | State | Finding |", "|---|---|---|"]
    for layer in report.layers:
        worst = next((c for c in layer.checks if c.state is layer.state), None)
        finding = layer.reason or (f"{worst.check_id} {worst.message}" if worst else "")
        if layer.explained_by:
            finding = f"consequence of {layer.explained_by}: {finding}"
        out.append(f"| {layer.title} | {ICON[layer.state]} {layer.state.value} | {finding.replace('|', '/')} |")
    if d.consequences:
        out += ["", f"Consequences of this cause: {', '.join(d.consequences)}"]
    bad = [c for layer in report.layers for c in layer.checks
           if c.state in (State.FAIL, State.ERROR, State.WARN) and not c.explained_by]
    for c in bad:
        out += ["", f"<details><summary>{c.check_id} {c.title}: {c.message}</summary>", "", "```", *c.evidence, "```",
                "</details>"]
    out += ["", *[f"_{n}_" for n in report.notes], *[f"_capture blind at {b}_" for b in report.capture.blind],
            *[f"_capture: {c}_" for c in report.capture.clocks]]
    return "\n".join(out).rstrip() + "\n"


def _path(path: HopPath) -> list[str]:
    """The hop path as a table, one hop per row (request →, answer ←)."""
    rows = [f"Hop by hop — {marks.heading(path)}: {path.summary}", "", "| # | Hop | → | ← | Note |", "|---|---|---|---|---|"]
    for i, hop in enumerate(path.hops):
        name = f"**{hop.label}**" if i == path.at and path.outcome.value != "delivered" else hop.label
        note = hop.blind or hop.note
        rows.append(f"| {i + 1} | {name} | {marks.request_mark(path, i)} | {marks.reply_mark(path, i)} | "
                    f"{note.replace('|', '/')} |")
    return rows
