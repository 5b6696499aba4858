"""Many targets, one run: probe.runner's sharing of probes and steps between plans (issue 14 item 1),
and `check TARGET…` / `--all` on a fake cluster (what is refused, what the plans are)."""

from __future__ import annotations

from io import StringIO

from netdoctor.cli import main
from netdoctor.cluster.objects import Pod, Service, ServicePort
from netdoctor.environment import Environment
from netdoctor.model import (
    CaptureMode, Capture, Facts, Kind, Layer, Observation, Ping, Plan, PlannedProbe, ProbePurpose, Ref, RunningProbe,
    Step, TcpConnect,
)
from netdoctor.probe import runner

from test_check_command import FakeKube, POD, WEB


def facts(name: str) -> Facts:
    return Facts("demo", Ref(Kind.SERVICE, name), "a probe", "node-a", None, "demo", 80, 8080)


def plan(labels=(), backend_ip="10.244.1.5", service_ip="10.96.0.20") -> Plan:
    probes = (PlannedProbe("source", "node-a", "demo", labels, capture=True),
              PlannedProbe("node-node-b", "node-b", "demo", labels, capture=True),
              PlannedProbe("capture-node-a", "node-a", "demo", purpose=ProbePurpose.NODE_CAPTURE),
              PlannedProbe("capture-node-b", "node-b", "demo", purpose=ProbePurpose.NODE_CAPTURE))
    steps = (Step("pod:web-1", "ND-POD-001", Layer.POD, "source", TcpConnect(backend_ip, 8080)),
             Step("svc:clusterip", "ND-SVC-001", Layer.SERVICE, "source", TcpConnect(service_ip, 80, 3)),
             Step("node:node-b->web-1", "ND-NODE-002", Layer.NODE, "node-node-b", TcpConnect(backend_ip, 8080)),
             Step("mtu:source->node-b", "ND-NODE-004", Layer.NODE, "source", Ping(None, 1422, True, "node-node-b")))
    return Plan(probes, steps, capture=CaptureMode.AUTO)


def test_one_probe_per_namespace_identity_and_node_serves_every_plan():
    shared = runner._Shared.of((runner.Job(plan(), facts("a")), runner.Job(plan(service_ip="10.96.0.21"), facts("b"))))
    assert [p.role for p in shared.plan.probes] == ["source", "node-node-b", "capture-node-a", "capture-node-b"]
    assert shared.roles[1] == {r: r for r in ("source", "node-node-b", "capture-node-a", "capture-node-b")}


def test_another_identity_gets_its_own_probes_under_unique_roles_and_shares_the_node_captures():
    shared = runner._Shared.of((runner.Job(plan(), facts("a")),
                                runner.Job(plan(labels=(("app", "frontend"),)), facts("b"))))
    roles = [p.role for p in shared.plan.probes]
    assert roles == ["source", "node-node-b", "capture-node-a", "capture-node-b", "source-2", "node-node-b-2"]
    assert shared.roles[1]["source"] == "source-2" and shared.roles[1]["capture-node-a"] == "capture-node-a"


def test_a_step_two_plans_share_runs_once_and_each_gets_its_result_under_its_own_key():
    shared = runner._Shared.of((runner.Job(plan(), facts("a")), runner.Job(plan(service_ip="10.96.0.21"), facts("b"))))
    keys = [s.key for s in shared.plan.steps]
    assert keys == ["pod:web-1", "svc:clusterip", "node:node-b->web-1", "mtu:source->node-b", "svc:clusterip#1"]
    observed = tuple(Observation(k, (), None, (k,)) for k in keys)
    mine = shared.observations_of(1, observed)
    assert [(o.step_key, o.log) for o in mine] == [("pod:web-1", ("pod:web-1",)), ("svc:clusterip", ("svc:clusterip#1",)),
                                                   ("node:node-b->web-1", ("node:node-b->web-1",)),
                                                   ("mtu:source->node-b", ("mtu:source->node-b",))]


def test_a_ping_to_another_probe_goes_to_the_shared_probe_of_its_own_identity():
    shared = runner._Shared.of((runner.Job(plan(), facts("a")),
                                runner.Job(plan(labels=(("app", "x"),)), facts("b"))))
    pings = [s for s in shared.plan.steps if isinstance(s.action, Ping)]
    assert [(s.probe, s.action.to_probe) for s in pings] == [("source", "node-node-b"), ("source-2", "node-node-b-2")]


def test_each_plan_sees_its_own_probes_and_captures_under_its_own_roles():
    shared = runner._Shared.of((runner.Job(plan(), facts("a")),
                                runner.Job(plan(labels=(("app", "x"),)), facts("b"))))
    running = {role: RunningProbe(role, f"pod-{role}", "10.244.0.9", "node-a") for role in ("source", "source-2")}
    assert shared.running_of(1, running) == {"source": RunningProbe("source", "pod-source-2", "10.244.0.9", "node-a")}
    captures = (Capture("probe source", "node-a", "source"), Capture("probe source-2", "node-a", "source-2"),
                Capture("node-a", "node-a"))
    assert shared.captures_of(1, captures) == (Capture("probe source", "node-a", "source"), Capture("node-a", "node-a"))


def run(*argv, kube=None):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1"},
                      connect=lambda kubeconfig, context: kube or FakeKube())
    code = main(list(argv), env=env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


API = Service("demo", "api", "ClusterIP", "10.96.0.21", False, (ServicePort("http", "TCP", 80, 8080),), (("app", "web"),))


class ListingKube(FakeKube):
    def __init__(self):
        super().__init__(services=(WEB, API))

    def list_objects(self, kind, namespace=None, label_selector=None, field_selector=None):
        if kind != "Service":
            return []
        return [{"metadata": {"name": s.name, "namespace": s.namespace}} for s in self.services.values()
                if namespace in (None, s.namespace) and label_selector in (None, "tier=web")]


def test_several_targets_print_one_plan_each():
    code, out, _ = run("check", "svc/web", "svc/api", "-n", "demo", "--plan", kube=ListingKube())
    assert code == 0 and out.count("== demo/svc/") == 2 and "== demo/svc/api" in out


def test_all_lists_the_services_of_the_namespace():
    code, out, err = run("check", "--all", "-n", "demo", "--plan", kube=ListingKube())
    assert code == 0, err
    assert "== demo/svc/api" in out and "== demo/svc/web" in out


def test_all_with_a_selector_that_matches_nothing_is_exit_3():
    code, _, err = run("check", "--all", "-n", "demo", "-l", "tier=db", kube=ListingKube())
    assert code == 3 and "no Service in namespace 'demo' matches -l tier=db" in err


def test_target_choice_is_refused_before_connecting():
    for argv, message in ((("check",), "missing TARGET"), (("check", "web", "--all"), "not both"),
                          (("check", "web", "-A"), "add --all"), (("check", "--all", "-l", "a in (b"), "-l"),
                          (("check", "--all", "-A", "-n", "demo"), "not both")):
        code, _, err = run(*argv, kube=ListingKube())
        assert code == 2 and message in err, (argv, err)


def test_an_unknown_target_among_several_is_exit_3_before_anything_is_created():
    code, _, err = run("check", "svc/web", "svc/nope", "-n", "demo")
    assert code == 3 and "nope" in err


def test_progress_counts_the_steps_the_shared_run_runs():
    jobs = (runner.Job(plan(), facts("a")), runner.Job(plan(service_ip="10.96.0.21"), facts("b")))
    assert len(runner.shared_steps(jobs)) == 5 < sum(len(j.plan.steps) for j in jobs)
