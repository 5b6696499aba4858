"""The node sample in words: why each node was probed, or why it could not be.

Used by the text report (one `probed from:` line) and by `check --plan` (a line per node)."""

from __future__ import annotations

from netdoctor.model import SampledNode, Why

_WHY = {"source": "the source's node", "backend": "hosts backend {}", "dns": "hosts DNS pod {}",
        "group": "first of its kind: {}", "requested": "named by --nodes", "all": "--nodes all"}
_SHORT = {"source": "source", "backend": "backend", "dns": "DNS", "group": "its kind", "requested": "--nodes",
          "all": "all"}


def reason(why: Why) -> str:
    return _WHY[why.reason.value].format(why.detail)


def line(node: SampledNode) -> str:
    """`node-2: hosts backend api-1; hosts DNS pod coredns-1 (no probe: NotReady)`."""
    text = f"{node.name}: " + "; ".join(reason(w) for w in node.why)
    return text + (f" (no probe: {node.excluded})" if node.excluded else "")


def summary(sample: tuple[SampledNode, ...]) -> str:
    """`node-1 (source, backend), node-3 (DNS)`: the nodes probed, each with its reasons, short."""
    probed = [n for n in sample if n.excluded is None]
    return ", ".join(f"{n.name} ({', '.join(dict.fromkeys(_SHORT[w.reason.value] for w in n.why))})" for n in probed)
