"""`-o text` (default): a rich tree per layer, evidence shown for what did not pass (all with -v),
buffered logs of failed checks, then the verdict with the next commands. Plain off a terminal."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from netdoctor.model import CheckResult, HopPath, Report, State
from netdoctor.report import cluster, marks, sample

STYLE = {State.PASS: "green", State.WARN: "yellow", State.FAIL: "bold red", State.ERROR: "magenta", State.SKIP: "dim"}


def _tag(state: State) -> str:
    return f"[{STYLE[state]}]{state.value.upper():5}[/]"


def render(report: Report, console: Console, verbose: bool = False) -> None:
    if report.cluster:
        _cluster(report, console, verbose)
    tree = Tree(f"[bold]{escape(report.target)}[/] in {escape(report.namespace)} from {escape(report.source)}")
    for layer in report.layers:
        because = f"consequence of {layer.explained_by}" if layer.explained_by else layer.reason
        branch = tree.add(f"{_tag(layer.state)} {escape(layer.title)}" + (f" — {escape(because)}" if because else ""))
        if layer.reason and not verbose:
            continue
        for check in layer.checks:
            _check(branch, check, verbose)
    console.print(tree)
    if report.sample:
        console.print(f"[dim]probed from: {escape(sample.summary(report.sample))}[/]")
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/]")
    for blind in report.capture.blind:
        console.print(f"[yellow]capture: blind at {escape(blind)}[/]")
    for clock in report.capture.clocks:
        console.print(f"[yellow]capture: {escape(clock)}[/]")
    if verbose:
        _all_paths(report, console)
    _verdict(report, console)


def _cluster(report: Report, console: Console, verbose: bool) -> None:
    """The header: what the cluster is made of; with -v, the lines it was decided from."""
    console.print(f"cluster: {escape(cluster.header(report.cluster))}")
    for part, lines in (("cni", report.cluster.cni.evidence), ("proxy", report.cluster.proxy.evidence)):
        for line in lines if verbose else ():
            console.print(f"[dim]  {part}: {escape(line)}[/]")


def _check(branch: Tree, c: CheckResult, verbose: bool) -> None:
    because = f" [dim](consequence of {escape(c.explained_by)})[/]" if c.explained_by else ""
    node = branch.add(f"{_tag(c.state)} {c.check_id} {escape(c.title)}: {escape(c.message)}{because}")
    shown = verbose or (c.state in (State.FAIL, State.ERROR, State.WARN) and not c.explained_by)
    for line in c.evidence if shown else ():
        node.add(escape(line))
    if c.log and (verbose or (c.state in (State.FAIL, State.ERROR) and not c.explained_by)):
        logs = node.add("[dim]log[/]")
        for line in c.log:
            logs.add(f"[dim]{escape(line)}[/]")


def _verdict(report: Report, console: Console) -> None:
    d = report.diagnosis
    console.print()
    where = f" at {d.layer.value}" if d.layer else ""
    console.print(f"{_tag(d.state)}{escape(where)}: [bold]{escape(d.headline)}[/]" + (f" ({d.check_id})" if d.check_id else ""))
    if d.consequences:
        console.print(f"consequences: {escape(', '.join(d.consequences))} fail because of this")
    if d.path:
        console.print(f"{'where' if d.path.outcome.value != 'delivered' else 'path'}: {escape(d.path.summary)}")
        console.print(picture(d.path, console.width))
    if d.remediation:
        console.print(f"fix: {escape(d.remediation)}")
    for command in d.commands:
        console.print(f"  $ {escape(command)}")


def picture(path: HopPath, width: int) -> Group:
    """The path as a row of hops with what each saw of the request (→) and of the answer (←);
    one hop per line when the row does not fit `width`. What changed on the way comes after."""
    columns = [(h.pod or h.node or "?", h.interface) for h in path.hops]
    row_width = 3 + sum(max(len(a), len(b), 4) + 2 for a, b in columns)
    table = Table(box=None, padding=(0, 1), show_edge=False, show_header=row_width <= width)
    if row_width <= width:
        table.add_column("")
        for index, (owner, interface) in enumerate(columns):
            table.add_column(f"{escape(owner)}\n{escape(interface)}", justify="center", no_wrap=True,
                             header_style=_hop_style(path, index))
        table.add_row("→", *(marks.request_mark(path, i) for i in range(len(columns))))
        table.add_row("←", *(marks.reply_mark(path, i) for i in range(len(columns))))
    else:
        for column in ("→", "←", "hop"):
            table.add_column(column)
        for index, hop in enumerate(path.hops):
            table.add_row(marks.request_mark(path, index), marks.reply_mark(path, index),
                          f"[{_hop_style(path, index)}]{escape(hop.label)}[/]")
    return Group(f"[dim]{escape(marks.heading(path))}[/]", table, *_changes(path))


def _hop_style(path: HopPath, index: int) -> str:
    return "bold red" if index == path.at and path.outcome.value != "delivered" else "bold"


def _changes(path: HopPath) -> list[str]:
    """Each note (DNAT, tunnel, blind) once, at the first hop that shows it."""
    lines, shown = [], set()
    for hop in path.hops:
        for note in filter(None, (*hop.note.split(", "), hop.blind)):
            if note not in shown:
                shown.add(note)
                lines.append(f"  [dim]{escape(hop.label)}: {escape(note)}[/]")
    return lines


def _all_paths(report: Report, console: Console) -> None:
    console.print()
    console.print("[bold]hop by hop[/] (✓ seen, · not seen, ✗ lost here, ? not observed, RST/ICMP: a reset or an "
                  "ICMP error came back)")
    for path in report.paths:
        console.print(f"{escape(path.step_key)}: {escape(path.summary)}")
        if path.hops:
            console.print(picture(path, console.width))
