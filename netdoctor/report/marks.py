"""What a hop saw, as marks: shared by the text and Markdown renderers of a HopPath."""

from __future__ import annotations

from netdoctor.model import HopPath, PathOutcome, Reply
from netdoctor.observations import RefusalKind

SEEN, MISSED, BLIND, LOST = "✓", "·", "?", "✗"
REPLY_MARK = {Reply.ANSWER: "✓", Reply.RST: "RST", Reply.ICMP: "ICMP"}


def request_mark(path: HopPath, index: int) -> str:
    hop = path.hops[index]
    if hop.blind:
        return BLIND
    if hop.request:
        return SEEN
    lost_here = path.at == index and path.outcome is PathOutcome.DROPPED
    return LOST if lost_here else MISSED


def reply_mark(path: HopPath, index: int) -> str:
    hop = path.hops[index]
    if hop.blind:
        return BLIND
    if hop.reply:
        return REPLY_MARK[hop.reply]
    return LOST if path.at == index and path.outcome is PathOutcome.REPLY_LOST else MISSED


def heading(path: HopPath) -> str:
    tries = f" (so did {path.same_outcome} of {path.connections} connections)" if path.connections > 1 else ""
    return f"{path.flow}: {path.outcome.value}{_by(path)}{tries}"


def _by(path: HopPath) -> str:
    """Who refused, when it was not the pod: " by node-2 (ICMP port unreachable from 10.244.2.0)"."""
    r = path.refusal
    if r is None or r.kind not in (RefusalKind.REJECT, RefusalKind.NO_ENDPOINTS, RefusalKind.UNKNOWN) or not r.how:
        return ""
    if r.kind is RefusalKind.UNKNOWN:
        return f" ({r.how}: by the pod or a reject rule, not observed)"
    return f" by {r.node or '?'} ({r.how} from {r.sender or r.seen_as or '?'})"
