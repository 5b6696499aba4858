"""Renderers for `netdoctor policy`: the matrix as a rich grid or JSON, one flow's explanation.

Called by policy/cli.py with finished results (Matrix, FlowVerdict); nothing here decides.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netdoctor.policy.engine import DirectionState, DirectionVerdict, FlowVerdict
from netdoctor.policy.matrix import Matrix, Outcome
from netdoctor.policy.model import Direction, PolicyProblem

MATRIX_SCHEMA = "netdoctor.matrix/v1"  # netdoctor/schemas/matrix.schema.json
_STATE_WORDS = {
    DirectionState.NOT_ISOLATED: "allowed: no policy isolates it",
    DirectionState.ALLOWED: "allowed",
    DirectionState.DENIED: "DENIED",
    DirectionState.NOT_A_POD: "not a pod: no NetworkPolicy applies",
}


def render_problems(console: Console, problems: tuple[PolicyProblem, ...]) -> None:
    for problem in problems:
        console.print(Text(f"warning: {problem}", style="yellow"), soft_wrap=True)


def render_matrix(console: Console, matrix: Matrix) -> None:
    """A grid: one row per source, one column per destination, one line per port in each cell.
    Names are never cut: a column too narrow for its name folds it onto more lines."""
    if not matrix.pods:
        console.print("no pods in scope")
        return
    table = Table(show_lines=True, title="from (rows) → to (columns)")
    table.add_column("from \\ to", overflow="fold")
    for pod in matrix.pods:
        table.add_column(pod.key, overflow="fold")
    for s, source in enumerate(matrix.pods):
        table.add_row(source.key, *(_cell(matrix.between(s, d)) for d in range(len(matrix.pods))))
    console.print(table)
    allowed, total = matrix.totals()
    console.print(f"{allowed} of {total} flows allowed")
    if any(not pod.ports for pod in matrix.pods):
        console.print("a '-' cell: the destination declares no containerPorts and no --port applies to it")


def _cell(outcomes: tuple[Outcome, ...]) -> Text:
    if not outcomes:
        return Text("-", style="dim")
    text = Text()
    for i, outcome in enumerate(outcomes):
        mark, style = ("✓", "green") if outcome.allowed else ("✗", "red")
        text.append(("\n" if i else "") + f"{mark} {outcome.protocol.value}/{outcome.port}", style=style)
    return text


def matrix_json(matrix: Matrix) -> dict:
    cells = [
        {
            "from": cell.source.key,
            "to": cell.destination.key,
            "protocol": cell.outcome.protocol.value,
            "port": cell.outcome.port,
            "allowed": cell.outcome.allowed,
            "egress": cell.outcome.egress.value,
            "ingress": cell.outcome.ingress.value,
        }
        for cell in matrix.cells()
    ]
    return {"schema": MATRIX_SCHEMA, "cells": cells, "problems": [problem_json(p) for p in matrix.problems]}


def problem_json(problem: PolicyProblem) -> dict:
    return {"policy": problem.policy, "field": problem.field, "message": problem.message, "kind": problem.kind.value}


def render_explain(console: Console, verdict: FlowVerdict) -> None:
    word, style = ("ALLOWED", "bold green") if verdict.allowed else ("DENIED", "bold red")
    flow = f"{verdict.source.key} → {verdict.destination.key} {verdict.protocol.value}/{verdict.port}: "
    console.print(Text(flow) + Text(word, style=style), soft_wrap=True)
    for direction in (verdict.egress, verdict.ingress):
        console.print()
        for line in _direction_lines(direction):
            console.print(line, highlight=False, soft_wrap=True)


def _direction_lines(verdict: DirectionVerdict) -> list[Text]:
    where = "egress from" if verdict.direction is Direction.EGRESS else "ingress to"
    style = "red" if verdict.state is DirectionState.DENIED else "green"
    lines = [Text(f"{where} {verdict.subject}: ") + Text(_STATE_WORDS[verdict.state], style=style)]
    if verdict.isolating:
        lines.append(Text(f"  isolated by: {', '.join(verdict.isolating)}"))
    lines.extend(Text(f"  allowed by: {rule}") for rule in verdict.allowing)
    if verdict.state is DirectionState.DENIED:
        lines.extend(_denial_lines(verdict))
    return lines


def _denial_lines(verdict: DirectionVerdict) -> list[Text]:
    section = verdict.direction.value.lower()
    miss = verdict.nearest_miss
    if miss is None:
        return [Text(f"  none of these policies has a {section} rule: they deny all {section}")]
    lines = [Text(f"  nearest miss: {miss.rule}")]
    lines.extend(Text(f"    - {mismatch}", style="yellow") for mismatch in miss.mismatches)
    return lines
