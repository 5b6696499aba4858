"""`-o json`: the Report as a documented, versioned document (schema "netdoctor.check/v1").

Keys: schema, target, namespace, source, state, duration_s, notes, diagnosis{state, first_broken,
check_id, cause, headline, remediation, commands}, layers[{id, title, state, reason,
checks[{id, title, state, cause, message, evidence, log}]}]. States are pass/warn/fail/error/skip.
New keys may be added within v1; none is removed or renamed.
"""

from __future__ import annotations

import json

from netdoctor.model import CheckResult, LayerResult, Report

SCHEMA = "netdoctor.check/v1"


def document(report: Report) -> dict:
    d = report.diagnosis
    return {
        "schema": SCHEMA,
        "target": report.target,
        "namespace": report.namespace,
        "source": report.source,
        "state": report.state.value,
        "duration_s": round(report.duration_s, 3),
        "notes": list(report.notes),
        "diagnosis": {
            "state": d.state.value, "first_broken": d.first_broken.value if d.first_broken else None,
            "check_id": d.check_id, "cause": d.cause, "headline": d.headline, "remediation": d.remediation,
            "commands": list(d.commands),
        },
        "layers": [_layer(layer) for layer in report.layers],
    }


def _layer(layer: LayerResult) -> dict:
    return {"id": layer.layer.value, "title": layer.title, "state": layer.state.value, "reason": layer.reason,
            "checks": [_check(c) for c in layer.checks]}


def _check(c: CheckResult) -> dict:
    return {"id": c.check_id, "title": c.title, "state": c.state.value, "cause": c.cause, "message": c.message,
            "evidence": list(c.evidence), "log": list(c.log)}


def render(report: Report) -> str:
    return json.dumps(document(report), indent=2) + "\n"
