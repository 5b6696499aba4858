"""The nodes a check reads: as many as the question needs, not as many as the cluster has.

Called by check.resolve. Reads by name the nodes of the source, the backends and the DNS pods.
For the default sample it then asks a few one-node lists (limit 1): a node no backend runs on (for
the source probe when there is no --from), and nodes of zones and pools not seen yet, one at a
time (`key notin (seen values)`), skipping virtual-kubelet nodes by their label and cordoned ones by
field. The requests are bounded by the diversity labels and --max-nodes, each answer by one node.
`--nodes all` lists every node (page by page); `--nodes a,b` reads those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from netdoctor.check import DEFAULT_MAX_NODES
from netdoctor.cluster.kube import Kube, NotFound
from netdoctor.cluster.objects import Node
from netdoctor.errors import UsageError
from netdoctor.model import NOT_VIRTUAL_SELECTOR, POOL_LABELS, ZONE_LABELS, probe_excluded

MAX_BACKEND_NODES = 3  # backends' nodes in the sample (distinct nodes; the first backends' first)
MAX_DNS_NODES = 2
NAMES_SHOWN = 10  # node names an unknown --nodes name lists
ATTEMPTS = 3  # one-node lists per wanted node: a NotReady or tainted answer is skipped by name
DIVERSITY_KEYS = (ZONE_LABELS[0], *POOL_LABELS)


@dataclass(frozen=True)
class NodeChoice:
    """--nodes and --max-nodes: the nodes named (`names`), every node (`all`), or the default
    sample of at most `max_nodes`."""

    names: tuple[str, ...] | None = None
    all: bool = False
    max_nodes: int = DEFAULT_MAX_NODES


def involved(pods: Iterable, cap: int) -> list[str]:
    """The first `cap` distinct nodes of these pods (ready ones first): the ones the sample takes."""
    ordered = sorted(pods, key=lambda p: not p.ready)
    return list(dict.fromkeys(p.node_name for p in ordered if p.node_name))[:cap]


def read(kube: Kube, choice: NodeChoice, needed: Iterable[str | None], busy: set[str]) -> tuple[Node, ...]:
    """The nodes `needed` (the source's, backends', DNS pods'; a missing one is left out), then
    what `choice` adds; `busy`: nodes hosting a backend (the source probe goes elsewhere)."""
    found: dict[str, Node] = {}
    for name in dict.fromkeys(n for n in needed if n):
        try:
            found[name] = kube.node(name)
        except NotFound:
            continue  # a pod bound to a node that is gone: the pod's own state tells
    if choice.all:
        for node in kube.nodes():
            found.setdefault(node.name, node)
    elif choice.names is not None:
        for name in choice.names:
            if name not in found:
                found[name] = _named(kube, name)
    else:
        _discover(kube, found, busy, choice.max_nodes)
    return tuple(found.values())


def _named(kube: Kube, name: str) -> Node:
    try:
        return kube.node(name)
    except NotFound:
        known = [o["metadata"].get("name", "") for o in kube.list_metadata("Node", first=NAMES_SHOWN + 1)]
        listed = ", ".join(known[:NAMES_SHOWN]) + (", …" if len(known) > NAMES_SHOWN else "")
        raise UsageError(f"--nodes: no node named {name!r} (nodes: {listed or 'none'})",
                         hint="kubectl get nodes") from None


def _discover(kube: Kube, found: dict[str, Node], busy: set[str], max_nodes: int) -> None:
    if not any(probe_excluded(n) is None and n.name not in busy for n in found.values()):
        _one_more(kube, found, NOT_VIRTUAL_SELECTOR)
    for key in DIVERSITY_KEYS:
        while _hostable(found) < max_nodes:
            seen = sorted({n.label_map[key] for n in found.values() if n.label_map.get(key)})
            selector = f"{NOT_VIRTUAL_SELECTOR},{key}" + (f",{key} notin ({','.join(seen)})" if seen else "")
            if not _one_more(kube, found, selector):
                break


def _hostable(found: dict[str, Node]) -> int:
    return sum(1 for n in found.values() if probe_excluded(n) is None)


def _one_more(kube: Kube, found: dict[str, Node], selector: str) -> bool:
    """One node the selector matches that is not in `found` yet and can host a probe; those that
    cannot (NotReady, tainted) are kept in `found` too (they are shown), and skipped by name."""
    for _ in range(ATTEMPTS):
        fields = ",".join(["spec.unschedulable!=true", *(f"metadata.name!={n}" for n in found)])
        nodes = kube.nodes(selector, fields, first=1)
        if not nodes:
            return False
        found[nodes[0].name] = nodes[0]
        if probe_excluded(nodes[0]) is None:
            return True
    return False
