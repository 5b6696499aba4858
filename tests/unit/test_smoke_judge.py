"""A smoke file's expectations judged (issue 14 item 2), on test_judge's hand-made cluster: an
allowed flow passes only when every connection got through; a denied one when none did and none
reached the pod, a WARN when no policy explains the denial, a FAIL with the check's diagnosis when
traffic passed."""

from __future__ import annotations

from dataclasses import replace

from netdoctor import catalog
from netdoctor.check import plan, smoke
from netdoctor.judge import smoke as expectations
from netdoctor.judge.verdict import judge
from netdoctor.model import (
    DnsQuery, Evidence, ExpectKind, Expectation, Layer, Observation, Plan, PlannedProbe, State, Step,
)
from netdoctor.observations import DnsOutcome, DnsResult, TcpOutcome

from test_judge import BACKENDS, Cluster, denied_flows, facts

CHECKS = catalog.load()


def allowed_flows():
    """The engine's verdicts where no policy isolates the backends."""
    from netdoctor.model import PolicyFlow
    from netdoctor.policy.engine import decide
    from netdoctor.policy.model import Pod as PPod, Protocol, world_from_objects

    world = world_from_objects([{"kind": "Pod", "metadata": {"name": p.name, "namespace": "demo",
                                                             "labels": dict(p.labels)}, "status": {"podIP": p.ip}}
                                for p in BACKENDS])
    source = PPod("demo", "probe", {"run": "probe"})
    return tuple(PolicyFlow(p.name, decide(world, source, world.pod(f"demo/{p.name}"), Protocol.TCP, 8080))
                 for p in BACKENDS)


def flow(kind: ExpectKind, f, cluster: Cluster):
    exp = Expectation(kind, "flows[0]", 3, "demo/deploy/client → demo/svc/web http")
    the_plan = smoke._flow_plan(plan.build(f, plan.Options()), kind is ExpectKind.DENY)
    ev = Evidence(f, the_plan, cluster.observe(the_plan, f))
    return expectations.flow(exp, [(ev, judge(ev, CHECKS, 0.0, only=smoke.FLOW_LAYERS))]), the_plan


def test_a_flow_plan_is_the_sources_connections_and_a_denied_one_tries_each_once():
    allowed = smoke._flow_plan(plan.build(facts(), plan.Options()), deny=False)
    denied = smoke._flow_plan(plan.build(facts(policy=denied_flows()), plan.Options()), deny=True)
    assert {s.check_id for s in allowed.steps} == {"ND-TGT-003", "ND-POD-001", "ND-SVC-001"}
    assert {s.check_id for s in denied.steps} == {"ND-POD-001", "ND-SVC-001"}
    assert all(s.action.attempts == 1 and not s.action.until_covered for s in denied.steps)
    assert {s.probe for s in denied.steps} == {"source"}


def test_an_allowed_flow_passes_when_every_connection_gets_through():
    result, _ = flow(ExpectKind.ALLOW, facts(), Cluster())
    assert result.state is State.PASS and result.message.startswith("allowed: ")


def test_an_allowed_flow_that_is_blocked_fails_with_the_checks_diagnosis():
    result, _ = flow(ExpectKind.ALLOW, facts(policy=denied_flows()), Cluster(tcp=lambda n, ip, p: TcpOutcome.TIMEOUT))
    assert result.state is State.FAIL
    assert (result.diagnosis.layer, result.diagnosis.check_id, result.diagnosis.cause) == \
        (Layer.POLICY, "ND-POL-001", "ingress-denied")


def test_a_denied_flow_passes_when_nothing_gets_through_and_says_the_capture_cannot_confirm_it():
    result, _ = flow(ExpectKind.DENY, facts(policy=denied_flows()), Cluster(tcp=lambda n, ip, p: TcpOutcome.TIMEOUT))
    assert result.state is State.PASS and result.message.startswith("denied: none of")
    assert result.confirmed == "not confirmed by capture: no capture"
    assert any(line.startswith("policy engine: web-1: ingress") for line in result.evidence)


def test_a_denied_flow_that_gets_through_fails_naming_the_enforcement():
    result, _ = flow(ExpectKind.DENY, facts(policy=denied_flows()), Cluster())
    assert result.state is State.FAIL and result.message.startswith("allowed: ")
    assert result.diagnosis.check_id == "ND-POL-002" and result.diagnosis.cause == "not-enforcing"


def test_a_denied_flow_no_policy_denies_fails_with_the_policy_engines_word():
    result, _ = flow(ExpectKind.DENY, facts(policy=allowed_flows()), Cluster())
    assert result.state is State.FAIL and result.diagnosis.layer is Layer.POLICY
    assert result.diagnosis.headline.startswith("no NetworkPolicy denies this flow")


def test_a_denial_no_policy_explains_is_a_warning():
    result, _ = flow(ExpectKind.DENY, facts(policy=allowed_flows()), Cluster(tcp=lambda n, ip, p: TcpOutcome.TIMEOUT))
    assert result.state is State.WARN and "no NetworkPolicy denies it" in result.message


def test_a_refusal_without_capture_is_no_proof_the_pod_was_reached():
    result, _ = flow(ExpectKind.DENY, facts(policy=denied_flows()), Cluster(tcp=lambda n, ip, p: TcpOutcome.REFUSED))
    assert result.state is State.PASS


def lookup(results):
    f = facts()
    step = Step("lookup:db", "ND-DNS-002", Layer.DNS, "source", DnsQuery(None, "db", search=True))
    the_plan = Plan((PlannedProbe("source", "node-a", "demo"),), (step,))
    ev = Evidence(f, the_plan, (Observation(step.key, tuple(results)),))
    return expectations.lookup(Expectation(ExpectKind.RESOLVE, "names[0]", 9, "db resolves"), ev, CHECKS)


def test_a_name_resolves_through_the_search_path():
    result = lookup([DnsResult("db.demo.svc.cluster.local", "A", "10.96.0.10", DnsOutcome.ANSWER, 1, ("10.96.0.30",))])
    assert result.state is State.PASS and result.message == "resolves to 10.96.0.30 (as db.demo.svc.cluster.local)"


def test_a_name_that_does_not_resolve_fails_at_dns():
    result = lookup([DnsResult("db.demo.svc.cluster.local", "A", "10.96.0.10", DnsOutcome.TIMEOUT, 1)])
    assert result.state is State.FAIL and result.diagnosis.layer is Layer.DNS
    assert result.diagnosis.cause == "dns-unanswered"


def test_the_smoke_report_follows_its_schema_in_json_and_its_junit_parses():
    import json
    import xml.etree.ElementTree as ET

    from netdoctor.model import SmokeReport
    from netdoctor.report import smoke as rendered

    blocked, _ = flow(ExpectKind.ALLOW, facts(policy=denied_flows()), Cluster(tcp=lambda n, ip, p: TcpOutcome.TIMEOUT))
    denied, _ = flow(ExpectKind.DENY, facts(policy=denied_flows()), Cluster(tcp=lambda n, ip, p: TcpOutcome.TIMEOUT))
    resolved = lookup([DnsResult("db.demo.svc.cluster.local", "A", "10.96.0.10", DnsOutcome.ANSWER, 1, ("10.96.0.30",))])
    report = SmokeReport("shop-smoke.yaml", (blocked, denied, resolved), 3.2, 6)
    doc = json.loads(rendered.to_json(report))  # conftest validates it against netdoctor/schemas/smoke.schema.json
    assert doc["state"] == "fail" and doc["totals"] == {"pass": 2, "warn": 0, "fail": 1, "error": 0}
    assert doc["results"][0]["diagnosis"]["cause"] == "ingress-denied"
    suites = ET.fromstring(rendered.to_junit(report)).findall("testsuite")
    assert [s.get("name") for s in suites] == ["flows[0] demo/deploy/client → demo/svc/web http"] * 2 + \
        ["names[0] db resolves"]
    assert suites[0].get("failures") == "1" and "FAIL at policy" in suites[0].find("testcase/failure").text


def test_the_smoke_junit_is_valid_against_the_common_xsd():
    from pathlib import Path

    import xmlschema

    from netdoctor.model import SmokeReport
    from netdoctor.report import smoke as rendered

    blocked, _ = flow(ExpectKind.ALLOW, facts(policy=denied_flows()), Cluster(tcp=lambda n, ip, p: TcpOutcome.TIMEOUT))
    xsd = xmlschema.XMLSchema(str(Path(__file__).parent / "data" / "junit" / "junit-10.xsd"))
    xsd.validate(rendered.to_junit(SmokeReport("shop-smoke.yaml", (blocked,), 1.0, 2)))
