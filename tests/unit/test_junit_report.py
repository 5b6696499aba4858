"""`-o junit` validates against the Jenkins junit-10.xsd shipped in tests/unit/data/junit/, names
each suite by target and each case by namespace, target and layer, carries times, timestamps and
totals, and puts the diagnosis in the failure text; several targets make one file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
import xmlschema

from netdoctor.report import junit
from test_judge import Cluster, facts, run
from test_report import BROKEN, output

XSD = Path(__file__).resolve().parent / "data" / "junit" / "junit-10.xsd"
STARTED = datetime(2026, 3, 1, 12, 30, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def schema():
    return xmlschema.XMLSchema(XSD)


def test_a_check_validates_against_the_jenkins_xsd(schema):
    schema.validate(output("junit", replace(BROKEN, started_at=STARTED)))
    schema.validate(output("junit"))  # a report without a start time too


def test_one_suite_per_target_named_and_timed(schema):
    root = ET.fromstring(output("junit", replace(BROKEN, started_at=STARTED, duration_s=4.25)))
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "demo/svc/web" and suite.get("timestamp") == "2026-03-01T12:30:05"
    assert suite.get("time") == "4.250"
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == int(root.get("tests"))
    assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases) == int(root.get("failures"))
    assert int(suite.get("skipped")) == sum(c.find("skipped") is not None for c in cases)
    assert {c.get("classname") for c in cases} >= {"demo/svc/web.dns", "demo/svc/web.target"}
    assert all(c.get("time") for c in cases)
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["target"] == "svc/web" and properties["namespace"] == "demo" and properties["state"] == "fail"


def test_a_failure_says_where_the_fix_and_the_next_commands():
    root = ET.fromstring(output("junit"))
    dns = next(c for c in root.iter("testcase") if c.get("name").startswith("ND-DNS-002"))
    failure = dns.find("failure")
    assert failure.get("type") and failure.get("message")
    assert "verdict: FAIL at dns:" in failure.text and "fix: " in failure.text
    assert "$ kubectl -n kube-system get pods -l k8s-app=kube-dns" in failure.text


def test_several_targets_make_one_file_with_totals(schema):
    healthy = run(facts(), Cluster())
    other = replace(BROKEN, target="svc/api", namespace="shop", started_at=STARTED)
    text = junit.document([junit.suite(healthy), junit.suite(other)], "netdoctor smoke")
    schema.validate(text)
    root = ET.fromstring(text)
    assert [s.get("name") for s in root.findall("testsuite")] == ["demo/svc/web", "shop/svc/api"]
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in root.findall("testsuite"))
    assert root.get("failures") == root.findall("testsuite")[1].get("failures") != "0"
    assert root.findall("testsuite")[0].get("failures") == "0"
