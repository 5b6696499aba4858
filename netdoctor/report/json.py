"""`-o json`: the Report as a documented, versioned document (schema "netdoctor.check/v1"),
described by the JSON Schema netdoctor/schemas/check.schema.json (`netdoctor schema check`).

Keys: schema, netdoctor_version, target, namespace, source, state, started_at (ISO 8601, UTC),
duration_s, notes, diagnosis{state, layer,
first_broken, check_id, cause, headline, remediation, commands, consequences, path},
layers[{id, title, state, reason, explained_by, checks[{id, title, state, cause, message, evidence,
log, explained_by, duration_s}]}], capture{mode, points, blind, clocks},
cluster{cni{name, overlay, confidence, evidence}, proxy{name, mode, confidence, evidence}} or null,
paths[PATH]. A PATH is {step, flow, outcome, cause, summary, params, at, connections, same_outcome,
backends{"ip:port": n}, refusal, hops[{label, node, pod, interface, kind, request, reply, note, blind}]};
`at` indexes hops (the hop of loss or refusal), `diagnosis.path` is a PATH or null. `refusal` says
who turned the connection away: {kind, sender, node, how, seen_as}, kind pod (its own reset: it
answered) / reject (a node's reject rule answered for it) / no-endpoints / unreachable / silent /
unknown (no capture shows it); `seen_as` is the sender as the client saw it when conntrack rewrote
it (a Service IP); null when delivered.
`diagnosis.layer` is the layer of the most likely root cause (the text report's "FAIL at");
`first_broken` the first layer, in runbook order, in the worst state. `consequences` lists the IDs
of the failed checks that cause explains; each of them has `explained_by` = "CHECK-ID:cause".
`cluster` is what the cluster is made of: cni.name flannel/calico/canal/cilium/aws-vpc-cni/kube-router/
antrea/weave/unknown, overlay vxlan/geneve/ipip/routed/unknown; proxy.name kube-proxy/cilium/calico/
kube-router/unknown, mode iptables/nftables/ipvs/ebpf/unknown; confidence high/medium/low; evidence
the lines it was decided from (for unknown: what was seen). null when the API was not read.
A command that ends in error (exit 2-5, 130) prints {schema, netdoctor_version, state: "error",
error{exit_code, message, hint}}, or the report it could still make with that `error` key.
States are pass/warn/fail/error/skip; outcomes delivered/refused (the pod's reset)/rejected (a
node's reject)/icmp-error/dropped/reply-lost/unknown; replies answer/rst/icmp or null. New keys may be added within v1; none is removed or renamed.
"""

from __future__ import annotations

from netdoctor import schemas
from netdoctor.model import CheckResult, ClusterKind, Hop, HopPath, LayerResult, Report, State
from netdoctor.observations import Refusal

SCHEMA = "netdoctor.check/v1"


def document(report: Report) -> dict:
    d = report.diagnosis
    return {
        "schema": SCHEMA,
        "target": report.target,
        "namespace": report.namespace,
        "source": report.source,
        "state": report.state.value,
        "started_at": report.started_at.isoformat(timespec="seconds") if report.started_at else None,
        "duration_s": round(report.duration_s, 3),
        "notes": list(report.notes),
        "sample": [{"node": n.name, "reasons": [{"reason": w.reason.value, "detail": w.detail} for w in n.why],
                    "excluded": n.excluded} for n in report.sample],
        "diagnosis": {
            "state": d.state.value, "layer": d.layer.value if d.layer else None,
            "first_broken": _first_broken(report),
            "check_id": d.check_id, "cause": d.cause, "headline": d.headline, "remediation": d.remediation,
            "commands": list(d.commands), "consequences": list(d.consequences),
            "path": _path(d.path) if d.path else None,
        },
        "layers": [_layer(layer) for layer in report.layers],
        "capture": {"mode": report.capture.mode.value, "points": list(report.capture.points),
                    "blind": list(report.capture.blind), "clocks": list(report.capture.clocks)},
        "cluster": _cluster(report.cluster) if report.cluster else None,
        "paths": [_path(p) for p in report.paths],
    }


def _cluster(kind: ClusterKind) -> dict:
    cni, proxy = kind.cni, kind.proxy
    return {"cni": {"name": cni.name.value, "overlay": cni.overlay.value, "confidence": cni.confidence.value,
                    "evidence": list(cni.evidence)},
            "proxy": {"name": proxy.name.value, "mode": proxy.mode.value, "confidence": proxy.confidence.value,
                      "evidence": list(proxy.evidence)}}


def _first_broken(report: Report) -> str | None:
    if report.state not in (State.FAIL, State.ERROR, State.WARN):
        return None
    return next(layer.layer.value for layer in report.layers if layer.state is report.state)


def _path(p: HopPath) -> dict:
    return {"step": p.step_key, "flow": p.flow, "outcome": p.outcome.value, "cause": p.cause, "summary": p.summary,
            "params": dict(p.params), "at": p.at, "connections": p.connections, "same_outcome": p.same_outcome, "backends": dict(p.backends),
            "refusal": _refusal(p.refusal) if p.refusal else None, "hops": [_hop(h) for h in p.hops]}


def _refusal(r: Refusal) -> dict:
    return {"kind": r.kind.value, "sender": r.sender, "node": r.node, "how": r.how, "seen_as": r.seen_as}


def _hop(h: Hop) -> dict:
    return {"label": h.label, "node": h.node, "pod": h.pod, "interface": h.interface, "kind": h.kind.value,
            "request": h.request, "reply": h.reply.value if h.reply else None, "note": h.note, "blind": h.blind}


def _layer(layer: LayerResult) -> dict:
    return {"id": layer.layer.value, "title": layer.title, "state": layer.state.value, "reason": layer.reason,
            "explained_by": layer.explained_by, "checks": [_check(c) for c in layer.checks]}


def _check(c: CheckResult) -> dict:
    return {"id": c.check_id, "title": c.title, "state": c.state.value, "cause": c.cause, "message": c.message,
            "evidence": list(c.evidence), "log": list(c.log), "explained_by": c.explained_by,
            "duration_s": round(c.duration_s, 3)}


def render(report: Report) -> str:
    return schemas.dump(document(report))
