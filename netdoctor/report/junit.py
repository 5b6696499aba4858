"""`-o junit`: one testsuite per layer, one testcase per check (id + title), for CI dashboards.
FAIL → <failure>, ERROR → <error>, SKIP → <skipped>; WARN passes with the message in system-out.
Each suite's <properties> say what the cluster is made of (cluster.cni, cluster.cni.overlay,
cluster.proxy, cluster.proxy.mode, and their confidence)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from netdoctor.model import ClusterKind, Report, State


def render(report: Report) -> str:
    root = ET.Element("testsuites", name=f"netdoctor check {report.target}", time=f"{report.duration_s:.3f}")
    for layer in report.layers:
        suite = ET.SubElement(root, "testsuite", name=layer.title, tests=str(len(layer.checks)),
                              failures=str(sum(c.state is State.FAIL for c in layer.checks)),
                              errors=str(sum(c.state is State.ERROR for c in layer.checks)),
                              skipped=str(sum(c.state is State.SKIP for c in layer.checks)))
        if report.cluster:
            _properties(suite, report.cluster)
        for c in layer.checks:
            case = ET.SubElement(suite, "testcase", classname=f"netdoctor.{layer.layer.value}", name=f"{c.check_id} {c.title}")
            body = "\n".join((*c.evidence, *c.log))
            if c.state is State.FAIL:
                message = f"consequence of {c.explained_by}: {c.message}" if c.explained_by else c.message
                ET.SubElement(case, "failure", message=message, type=c.cause or "fail").text = body
            elif c.state is State.ERROR:
                ET.SubElement(case, "error", message=c.message).text = body
            elif c.state is State.SKIP:
                ET.SubElement(case, "skipped", message=c.message)
            elif c.state is State.WARN:
                ET.SubElement(case, "system-out").text = f"WARN: {c.message}\n{body}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _properties(suite: ET.Element, kind: ClusterKind) -> None:
    properties = ET.SubElement(suite, "properties")
    for name, value in (("cluster.cni", kind.cni.name.value), ("cluster.cni.overlay", kind.cni.overlay.value),
                        ("cluster.cni.confidence", kind.cni.confidence.value),
                        ("cluster.proxy", kind.proxy.name.value), ("cluster.proxy.mode", kind.proxy.mode.value),
                        ("cluster.proxy.confidence", kind.proxy.confidence.value)):
        ET.SubElement(properties, "property", name=name, value=value)
