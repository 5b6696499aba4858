"""The hop-by-hop path in the renderers: text (wide row and one hop per line), Markdown table,
JSON keys. The paths are built by hand (the README's overlay-blocked example)."""

from __future__ import annotations

import json
import re
from io import StringIO

from rich.console import Console

from netdoctor.model import (
    CaptureMode,
    CaptureStatus,
    CheckResult,
    Diagnosis,
    Hop,
    HopKind,
    HopPath,
    Layer,
    LayerResult,
    PathOutcome,
    Reply,
    Report,
    State,
)
from netdoctor.observations import Refusal, RefusalKind
from netdoctor.report import json as json_report
from netdoctor.report import markdown, text

VXLAN = "VXLAN 172.30.0.1 → 172.30.0.2"
BLIND = "node-9: pods with hostNetwork are forbidden by PodSecurity"


def hops(reached: int) -> tuple[Hop, ...]:
    """The README's cross-node path; the request seen at the first `reached` hops."""
    spec = [("node-1", "eth0", HopKind.POD, "source"), ("node-1", "ve5a3e5f82a", HopKind.VETH, None),
            ("node-1", "cni0", HopKind.BRIDGE, None), ("node-1", "flannel.1", HopKind.OVERLAY, None),
            ("node-1", "eth0", HopKind.UNDERLAY, None), ("node-2", "eth0", HopKind.UNDERLAY, None),
            ("node-2", "flannel.1", HopKind.OVERLAY, None), ("node-2", "cni0", HopKind.BRIDGE, None),
            ("node-2", "v90be70f2f7", HopKind.VETH, None)]
    return tuple(Hop(node, interface, kind, request=i < reached, pod=pod,
                     note=VXLAN if kind is HopKind.UNDERLAY and i < reached else "")
                 for i, (node, interface, kind, pod) in enumerate(spec))


DROPPED = HopPath(
    "pod:web-1", "10.244.1.60:58982 → 10.244.2.20:8080 tcp", hops(5), PathOutcome.DROPPED, "overlay-blocked", at=5,
    params=(("hop", "node-2 eth0"), ("tunnel", VXLAN)),
    summary="SYN to 10.244.2.20:8080 left node-1 encapsulated and never reached node-2 eth0",
    connections=2, same_outcome=2,
)
DELIVERED = HopPath(
    "svc:web", "10.244.1.60:41000 → 10.96.0.20:80 tcp",
    tuple(Hop(h.node, h.interface, h.kind, True, Reply.ANSWER,
              note=("DNAT → 10.244.2.20:8080" + (f", {VXLAN}" if h.kind is HopKind.UNDERLAY else "")) if i >= 2 else "",
              pod=h.pod) for i, h in enumerate(hops(9))),
    PathOutcome.DELIVERED, "delivered", summary="SYN to 10.96.0.20:80 was answered", connections=3, same_outcome=3,
    backends=(("10.244.2.20:8080", 2), ("10.244.2.21:8080", 1)),
)
BLIND_HOP = HopPath(
    "ping:node-3", "10.244.1.60:7 → 10.244.3.5 icmp",
    (Hop("node-1", "eth0", HopKind.POD, True, pod="source"), Hop("node-1", "eth0", HopKind.UNDERLAY, True),
     Hop("node-3", "(node)", HopKind.UNDERLAY, blind="node-3 is NotReady: no probe can run there")),
    PathOutcome.DROPPED, "node-not-ready", at=2, summary="lost beyond node-3, which is NotReady",
)


def report(path: HopPath | None = DROPPED, paths=(DROPPED, DELIVERED, BLIND_HOP), blind=(BLIND,)) -> Report:
    check = CheckResult("ND-NODE-002", State.FAIL, "cross-node", "same-node works, cross-node fails",
                        title="Cross-node pod traffic")
    diagnosis = Diagnosis(State.FAIL, Layer.NODE, "ND-NODE-002", "cross-node", "Cross-node traffic fails",
                          "Open UDP 8472 between the nodes.", ("kubectl get nodes -o wide",), path)
    return Report("svc/web", "demo", "probe on node-1", (LayerResult(Layer.NODE, "Nodes", State.FAIL, (check,)),),
                  diagnosis, paths=paths, capture=CaptureStatus(CaptureMode.AUTO, ("node-1", "node-2", "probe source"),
                                                                blind))


def as_text(r: Report, width: int = 200, verbose: bool = False) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    text.render(r, console, verbose)
    return console.file.getvalue()


def row(out: str, arrow: str) -> list[str]:
    line = next(line for line in out.splitlines() if line.strip().startswith(arrow))
    return line.split()[1:]


# --- text ------------------------------------------------------------------------------------


def test_text_shows_the_lost_hop_in_a_row_when_it_fits():
    out = as_text(report())
    assert "where: SYN to 10.244.2.20:8080 left node-1 encapsulated and never reached node-2 eth0" in out
    assert "10.244.1.60:58982 → 10.244.2.20:8080 tcp: dropped (so did 2 of 2 connections)" in out
    header = next(line for line in out.splitlines() if "ve5a3e5f82a" in line)
    assert header.split() == ["eth0", "ve5a3e5f82a", "cni0", "flannel.1", "eth0", "eth0", "flannel.1", "cni0",
                              "v90be70f2f7"]
    owners = out.splitlines()[out.splitlines().index(header) - 1].split()
    assert owners == ["source"] + ["node-1"] * 4 + ["node-2"] * 4
    assert row(out, "→") == ["✓"] * 5 + ["✗"] + ["·"] * 3
    assert row(out, "←") == ["·"] * 9
    assert out.count(f"node-1 eth0: {VXLAN}") == 1  # each change once, at the first hop showing it
    assert "\x1b[" not in out


def test_text_puts_one_hop_per_line_when_the_row_does_not_fit():
    out = as_text(report(), width=60)
    lines = out.splitlines()
    assert not any("ve5a3e5f82a" in line and "v90be70f2f7" in line for line in lines)
    hop_lines = [line.split() for line in lines if re.match(r"^\s*[✓·✗?]\s+[✓·✗?A-Z]+\s+\S", line)]
    assert [" ".join(words[2:]) for words in hop_lines] == [
        "source eth0", "node-1 ve5a3e5f82a", "node-1 cni0", "node-1 flannel.1", "node-1 eth0", "node-2 eth0",
        "node-2 flannel.1", "node-2 cni0", "node-2 v90be70f2f7"]
    assert [words[0] for words in hop_lines] == ["✓"] * 5 + ["✗"] + ["·"] * 3
    assert max(len(line.rstrip()) for line in lines) <= 60


def test_text_says_where_capture_was_blind_and_shows_blind_hops():
    out = as_text(report(path=BLIND_HOP))
    assert f"capture: blind at {BLIND}" in out
    assert row(out, "→") == ["✓", "✓", "?"] and row(out, "←") == ["·", "·", "?"]
    assert "node-3 (node): node-3 is NotReady: no probe can run there" in out


def test_text_labels_a_delivered_path_as_path_not_where():
    out = as_text(report(path=DELIVERED))
    assert "path: SYN to 10.96.0.20:80 was answered" in out and "where:" not in out
    assert row(out, "←") == ["✓"] * 9 and "✗" not in out
    assert out.count("DNAT → 10.244.2.20:8080") == 1
    assert "(so did 3 of 3 connections)" in out


def test_text_without_capture_has_no_path_and_no_blind_lines():
    out = as_text(report(path=None, paths=(), blind=()))
    assert "capture:" not in out and "where:" not in out and "→" not in out
    assert "Cross-node traffic fails" in out


def test_verbose_text_lists_every_steps_path():
    out = as_text(report(), verbose=True)
    assert "hop by hop" in out
    for path in (DROPPED, DELIVERED, BLIND_HOP):
        assert f"{path.step_key}: {path.summary}" in out


# --- markdown --------------------------------------------------------------------------------


def test_markdown_has_a_hop_table_with_the_lost_hop_in_bold():
    md = markdown.render(report())
    assert "Hop by hop — 10.244.1.60:58982 → 10.244.2.20:8080 tcp: dropped (so did 2 of 2 connections): SYN to" in md
    assert "| # | Hop | → | ← | Note |" in md
    rows = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == 9
    assert rows[0] == "| 1 | source eth0 | ✓ | · |  |"
    assert rows[4] == f"| 5 | node-1 eth0 | ✓ | · | {VXLAN} |"
    assert rows[5] == "| 6 | **node-2 eth0** | ✗ | · |  |"
    assert sum("**" in r for r in rows) == 1
    assert f"_capture blind at {BLIND}_" in md


def test_markdown_bolds_nothing_on_a_delivered_path_and_shows_blind_reasons_as_notes():
    md = markdown.render(report(path=DELIVERED))
    rows = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == 9 and not any("**" in r for r in rows)
    md = markdown.render(report(path=BLIND_HOP))
    rows = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert rows[2] == "| 3 | **node-3 (node)** | ? | ? | node-3 is NotReady: no probe can run there |"


def test_markdown_without_a_path_has_no_hop_table():
    md = markdown.render(report(path=None, paths=(), blind=()))
    assert "Hop by hop" not in md and "capture blind" not in md


# --- json ------------------------------------------------------------------------------------


HOP_KEYS = {"label", "node", "pod", "interface", "kind", "request", "reply", "note", "blind"}
PATH_KEYS = {"step", "flow", "outcome", "cause", "summary", "params", "at", "connections", "same_outcome",
             "backends", "refusal", "hops"}


def test_json_carries_the_diagnosis_path_every_path_and_the_capture_status():
    doc = json.loads(json.dumps(json_report.document(report())))  # JSON-serialisable
    path = doc["diagnosis"]["path"]
    assert set(path) == PATH_KEYS
    assert path["step"] == "pod:web-1" and path["outcome"] == "dropped" and path["cause"] == "overlay-blocked"
    assert path["at"] == 5 and path["hops"][5]["label"] == "node-2 eth0"
    assert path["connections"] == 2 and path["same_outcome"] == 2
    assert path["params"] == {"hop": "node-2 eth0", "tunnel": VXLAN}
    assert [set(h) for h in path["hops"]] == [HOP_KEYS] * 9
    assert path["hops"][0] == {"label": "source eth0", "node": "node-1", "pod": "source", "interface": "eth0",
                               "kind": "pod", "request": True, "reply": None, "note": "", "blind": None}
    assert path["hops"][4]["note"] == VXLAN and path["hops"][4]["kind"] == "underlay"
    assert [p["step"] for p in doc["paths"]] == ["pod:web-1", "svc:web", "ping:node-3"]
    assert all(set(p) == PATH_KEYS for p in doc["paths"])
    delivered = doc["paths"][1]
    assert delivered["backends"] == {"10.244.2.20:8080": 2, "10.244.2.21:8080": 1}
    assert delivered["at"] is None and {h["reply"] for h in delivered["hops"]} == {"answer"}
    assert doc["paths"][2]["hops"][2]["blind"] == "node-3 is NotReady: no probe can run there"
    assert doc["capture"] == {"mode": "auto", "points": ["node-1", "node-2", "probe source"], "blind": [BLIND], "clocks": []}


def test_json_diagnosis_path_is_null_without_capture():
    r = report(path=None, paths=(), blind=())
    r = Report(r.target, r.namespace, r.source, r.layers, r.diagnosis)
    doc = json_report.document(r)
    assert doc["diagnosis"]["path"] is None and doc["paths"] == []
    assert doc["capture"] == {"mode": "off", "points": [], "blind": [], "clocks": []}


def test_json_reply_values():
    refused = HopPath("pod:web-1", "f", (Hop("node-2", "v90", HopKind.VETH, True, Reply.RST),
                                         Hop("node-1", "eth0", HopKind.UNDERLAY, True, Reply.ICMP)),
                      PathOutcome.REFUSED, "refused-by-pod", at=0)
    doc = json_report.document(report(path=refused, paths=(refused,)))
    assert [h["reply"] for h in doc["diagnosis"]["path"]["hops"]] == ["rst", "icmp"]
    assert doc["diagnosis"]["path"]["outcome"] == "refused"


# --- refusals told apart ---------------------------------------------------------------------

REJECTED = HopPath(
    "svc:web", "10.244.1.60:43200 → 10.96.0.20:80 tcp",
    tuple(Hop(h.node, h.interface, h.kind, i < 7, Reply.ICMP if i < 7 else None,
              note="DNAT → 10.244.2.20:8080" if i == 2 else "", pod=h.pod) for i, h in enumerate(hops(9))),
    PathOutcome.REJECTED, "policy-reject", at=6, summary="SYN to 10.96.0.20:80 was rejected by node-2",
    refusal=Refusal(RefusalKind.REJECT, "10.244.2.0", "node-2", "ICMP port unreachable", "10.96.0.20"),
)


def test_text_names_the_node_that_rejected_and_its_real_sender():
    out = as_text(report(path=REJECTED, paths=(REJECTED,)))
    assert "10.244.1.60:43200 → 10.96.0.20:80 tcp: rejected by node-2 (ICMP port unreachable from 10.244.2.0)" in out
    assert row(out, "→") == ["✓"] * 7 + ["·"] * 2
    assert row(out, "←") == ["ICMP"] * 7 + ["·"] * 2
    assert "✗" not in out  # rejected, not lost


def test_markdown_heading_names_the_rejecting_node_and_bolds_its_hop():
    md = markdown.render(report(path=REJECTED, paths=(REJECTED,)))
    assert "tcp: rejected by node-2 (ICMP port unreachable from 10.244.2.0): SYN to" in md
    rows = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert rows[6] == "| 7 | **node-2 flannel.1** | ✓ | ICMP |  |"


def test_json_carries_who_refused():
    doc = json.loads(json.dumps(json_report.document(report(path=REJECTED, paths=(REJECTED, DELIVERED)))))
    path = doc["diagnosis"]["path"]
    assert path["outcome"] == "rejected" and path["cause"] == "policy-reject"
    assert path["refusal"] == {"kind": "reject", "sender": "10.244.2.0", "node": "node-2",
                               "how": "ICMP port unreachable", "seen_as": "10.96.0.20"}
    assert doc["paths"][1]["refusal"] is None  # delivered


def test_a_refusal_nobody_observed_says_so_and_the_pods_own_reset_adds_nothing():
    unseen = HopPath("pod:web-1", "f", DROPPED.hops, PathOutcome.REFUSED, "refused-unseen", at=4,
                     refusal=Refusal(RefusalKind.UNKNOWN, "10.244.2.20", how="TCP reset"))
    out = as_text(report(path=unseen, paths=(unseen,)))
    assert "f: refused (TCP reset: by the pod or a reject rule, not observed)" in out
    own = HopPath("pod:web-1", "f", DROPPED.hops, PathOutcome.REFUSED, "refused-by-pod", at=8,
                  refusal=Refusal(RefusalKind.POD, "10.244.2.20", "node-2", "TCP reset"))
    assert "f: refused\n" in as_text(report(path=own, paths=(own,))).replace(" \n", "\n")


def test_text_keeps_step_keys_that_look_like_emoji_codes():
    """rich turns `:repeat:` into 🔁 unless told not to: the step `dns:repeat` must print as typed."""
    from dataclasses import replace

    from netdoctor.environment import Environment

    env = Environment(stdout=StringIO(), environ={"NO_COLOR": "1"})
    console = env.console()
    text.render(report(paths=(replace(DELIVERED, step_key="dns:repeat"),)), console, True)
    out = env.stdout.getvalue()
    assert "dns:repeat: " in out and "🔁" not in out
