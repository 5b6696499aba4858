"""Renderers on judged Reports: content, JSON schema keys, JUnit structure, no colour off a tty."""

import json
import xml.etree.ElementTree as ET
from io import StringIO

from netdoctor.environment import Environment
from netdoctor.observations import DnsOutcome, DnsResult
from netdoctor.report.render import render
from test_judge import Cluster, facts, run

BROKEN = run(facts(), Cluster(dns=lambda s, name, a: DnsResult(name, "A", s, DnsOutcome.TIMEOUT, a)))


def output(fmt, report=BROKEN, verbose=False):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={})
    render(report, fmt, env, verbose)
    return env.stdout.getvalue()


def test_json_has_the_versioned_schema():
    doc = json.loads(output("json"))
    assert doc["schema"] == "netdoctor.check/v1"
    assert doc["state"] == "fail" and doc["diagnosis"]["first_broken"] == "dns" and doc["diagnosis"]["layer"] == "dns"
    assert doc["diagnosis"]["check_id"] == "ND-DNS-002" and doc["diagnosis"]["commands"]
    assert {c["id"] for layer in doc["layers"] for c in layer["checks"]} >= {"ND-TGT-001", "ND-POL-002"}


def test_text_names_the_cause_and_next_commands_without_colour_off_a_tty():
    text = output("text")
    assert "ND-DNS-002" in text and "kubectl -n kube-system get pods -l k8s-app=kube-dns" in text
    assert "\x1b[" not in text


def test_markdown_leads_with_the_verdict():
    md = output("markdown")
    assert md.startswith("### netdoctor: `svc/web` in `demo`") and "| Layer | State | Finding |" in md


def test_junit_failures_match_failed_checks():
    root = ET.fromstring(output("junit"))
    failures = root.findall(".//failure")
    assert failures and any("ND-DNS-002" in case.get("name") for case in root.iter("testcase") if case.find("failure") is not None)


def test_the_report_says_which_nodes_were_probed_and_why():
    doc = json.loads(output("json"))
    sample = {n["node"]: n for n in doc["sample"]}
    assert sample["node-a"]["reasons"][0] == {"reason": "source", "detail": ""}
    assert {"reason": "backend", "detail": "web-1"} in sample["node-b"]["reasons"] and not sample["node-b"]["excluded"]
    assert "probed from: node-a (source, backend, DNS), node-b (backend, DNS)" in output("text")
