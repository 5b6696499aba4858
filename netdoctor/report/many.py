"""Many targets in one run (`check TARGET…`, `check --all`): each target's report, then a summary
table (target, state, broken layer, cause, time). Called by report.render.render_many with finished
Reports; the summary rows are derived from them alone.

JSON (schema "netdoctor.checks/v1", described with the single target's in
netdoctor/schemas/check.schema.json): {schema, netdoctor_version, state, reports: [a
netdoctor.check/v1 document per target], summary: [{target, namespace, state, layer, cause,
duration_s}]}; `state` is the worst target's. JUnit: a testsuite per target in one <testsuites>.
"""

from __future__ import annotations

from dataclasses import dataclass

from netdoctor.model import Report, State

SCHEMA = "netdoctor.checks/v1"


@dataclass(frozen=True)
class Row:
    target: str  # "shop/svc/api"
    namespace: str
    state: State
    layer: str  # the broken layer ("" when none)
    cause: str  # "ND-POL-001 ingress-denied"
    duration_s: float


def rows(reports: tuple[Report, ...]) -> tuple[Row, ...]:
    return tuple(Row(f"{r.namespace}/{r.target}", r.namespace, r.state,
                     r.diagnosis.layer.value if r.diagnosis.layer and r.state is not State.PASS else "",
                     " ".join(filter(None, (r.diagnosis.check_id, r.diagnosis.cause))) if r.state is not State.PASS else "",
                     r.duration_s) for r in reports)


def worst(reports: tuple[Report, ...]) -> State:
    return max((r.state for r in reports), key=lambda s: s.rank, default=State.SKIP)


def table_lines(reports: tuple[Report, ...]) -> list[str]:
    """The summary as aligned plain text lines (one per target), for the text report."""
    found = rows(reports)
    header = ("TARGET", "STATE", "LAYER", "CAUSE", "TIME")
    cells = [header] + [(r.target, r.state.value.upper(), r.layer or "-", r.cause or "-", f"{r.duration_s:.1f}s")
                        for r in found]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip() for c in cells]


def to_json(reports: tuple[Report, ...]) -> str:
    from netdoctor import schemas
    from netdoctor.report.json import document

    return schemas.dump({
        "schema": SCHEMA,
        "state": worst(reports).value,
        "reports": [document(r) for r in reports],
        "summary": [{"target": r.target, "namespace": r.namespace, "state": r.state.value, "layer": r.layer or None,
                     "cause": r.cause or None, "duration_s": round(r.duration_s, 3)} for r in rows(reports)],
    })


def to_markdown(reports: tuple[Report, ...]) -> str:
    from netdoctor.report.markdown import ICON, render

    out = [f"## netdoctor: {len(reports)} targets — {ICON[worst(reports)]} {worst(reports).value.upper()}", "",
           "| Target | State | Layer | Cause | Time |", "|---|---|---|---|---|"]
    out += [f"| `{r.target}` | {ICON[r.state]} {r.state.value} | {r.layer} | {r.cause} | {r.duration_s:.1f}s |"
            for r in rows(reports)]
    return "\n".join(out) + "\n\n" + "\n".join(render(r) for r in reports)


def to_junit(reports: tuple[Report, ...]) -> str:
    """Every target's testsuite in one file, with the totals over them."""
    from netdoctor.report import junit

    return junit.document([junit.suite(r) for r in reports], f"netdoctor check ({len(reports)} targets)")
