"""What the cluster is made of, in every format: the text header (evidence with -v), JSON's
`cluster.cni`/`cluster.proxy`, the Markdown line, JUnit properties; and the judge carries it over."""

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from io import StringIO

from netdoctor.environment import Environment
from netdoctor.model import ClusterKind, Cni, CniKind, Confidence, Overlay, ProxyKind, ProxyMode, ServiceProxy
from netdoctor.report.render import render
from test_judge import Cluster, facts, run

FLANNEL = ClusterKind(
    CniKind(Cni.FLANNEL, Overlay.VXLAN, Confidence.HIGH,
            ("DaemonSet kube-flannel/kube-flannel-ds (image ghcr.io/flannel-io/flannel:v0.27.4)",
             "ConfigMap kube-flannel/kube-flannel-cfg Backend.Type: vxlan")),
    ProxyKind(ServiceProxy.KUBE_PROXY, ProxyMode.NFTABLES, Confidence.HIGH,
              ("DaemonSet kube-system/kube-proxy (image registry.k8s.io/kube-proxy:v1.36.2)",
               "ConfigMap kube-system/kube-proxy config.conf mode: nftables")))
UNKNOWN = ClusterKind(
    CniKind(Cni.UNKNOWN, Overlay.UNKNOWN, Confidence.LOW, ("cannot read daemonsets in kube-system: forbidden",)),
    ProxyKind(ServiceProxy.UNKNOWN, ProxyMode.UNKNOWN, Confidence.LOW, ("cannot read daemonsets in kube-system: forbidden",)))
REPORT = replace(run(facts(), Cluster()), cluster=FLANNEL)


def output(fmt, report=REPORT, verbose=False):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={})
    render(report, fmt, env, verbose)
    return env.stdout.getvalue()


def test_the_judge_carries_what_resolve_read_into_the_report():
    assert run(facts(cluster=FLANNEL), Cluster()).cluster == FLANNEL
    assert run(facts(), Cluster()).cluster is None


def test_text_header_names_the_cni_and_the_proxy_and_with_v_the_lines_they_came_from():
    text = output("text")
    assert text.splitlines()[0] == "cluster: CNI flannel (vxlan overlay) · Service proxy kube-proxy (nftables)"
    assert "Backend.Type" not in text
    verbose = output("text", verbose=True)
    assert "  cni: ConfigMap kube-flannel/kube-flannel-cfg Backend.Type: vxlan" in verbose
    assert "  proxy: ConfigMap kube-system/kube-proxy config.conf mode: nftables" in verbose


def test_text_header_says_what_an_unknown_answer_saw_and_a_doubt():
    words = " ".join(output("text", replace(REPORT, cluster=UNKNOWN)).split())  # wrapped at 80 columns
    assert words.startswith("cluster: CNI unknown (cannot read daemonsets in kube-system: forbidden) · "
                            "Service proxy unknown (cannot read daemonsets in kube-system: forbidden)")
    doubtful = replace(FLANNEL, cni=replace(FLANNEL.cni, overlay=Overlay.ROUTED, confidence=Confidence.MEDIUM))
    assert output("text", replace(REPORT, cluster=doubtful)).startswith(
        "cluster: CNI flannel (routed, no overlay, medium confidence)")


def test_no_header_when_the_cluster_was_not_read():
    assert not output("text", replace(REPORT, cluster=None)).startswith("cluster:")
    assert json.loads(output("json", replace(REPORT, cluster=None)))["cluster"] is None


def test_json_cluster_keys():
    doc = json.loads(output("json"))
    assert doc["cluster"] == {
        "cni": {"name": "flannel", "overlay": "vxlan", "confidence": "high", "evidence": list(FLANNEL.cni.evidence)},
        "proxy": {"name": "kube-proxy", "mode": "nftables", "confidence": "high",
                  "evidence": list(FLANNEL.proxy.evidence)},
    }


def test_markdown_has_the_cluster_line_and_its_evidence():
    md = output("markdown")
    assert "\nCluster: CNI flannel (vxlan overlay) · Service proxy kube-proxy (nftables)\n" in md
    assert "ConfigMap kube-system/kube-proxy config.conf mode: nftables" in md.split("<details>")[1]


def test_junit_properties():
    root = ET.fromstring(output("junit"))
    suite = root.find("testsuite")
    assert list(suite)[0].tag == "properties"  # before the test cases, as the schema wants
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert {k: v for k, v in properties.items() if k.startswith("cluster.")} == {
        "cluster.cni": "flannel", "cluster.cni.overlay": "vxlan", "cluster.cni.confidence": "high",
        "cluster.proxy": "kube-proxy", "cluster.proxy.mode": "nftables", "cluster.proxy.confidence": "high"}
