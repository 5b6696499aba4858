"""`netdoctor check` in-process with a fake Kube injected through Environment.connect."""

from __future__ import annotations

from io import StringIO

import fakenodes
from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.cluster.kube import NotFound
from netdoctor.cluster.objects import EndpointSlice, Node, Pod, Service, ServicePort

WEB = Service("demo", "web", "ClusterIP", "10.96.0.20", False, (ServicePort("http", "TCP", 80, 8080),), (("app", "web"),))
POD = Pod("demo", "web-1", "u1", (("app", "web"),), "node-b", "10.244.1.5", None, "Running", True)


NODES = [Node("node-a", "192.168.0.1", True), Node("node-b", "192.168.0.2", True)]


class FakeKube:
    namespace = "default"

    def __init__(self, namespaces=("demo", "kube-system"), services=(WEB,)):
        self.namespaces, self.services = namespaces, {(s.namespace, s.name): s for s in services}

    def get_namespace(self, name):
        if name not in self.namespaces:
            raise NotFound("namespaces", name, None, f'namespaces "{name}" not found')

    def service(self, ns, name):
        if (ns, name) not in self.services:
            raise NotFound("services", name, ns, f'services "{name}" not found')
        return self.services[(ns, name)]

    def pods(self, ns, label_selector=None, field_selector=None):
        return [POD] if ns == "demo" else []

    def endpoint_slices(self, ns, service):
        return [EndpointSlice("demo", "web-x", "web", "IPv4", (), ())]

    def nodes(self, label_selector=None, field_selector=None, first=None):
        return fakenodes.select(NODES, label_selector, field_selector, first)

    def node(self, name):
        return fakenodes.named(NODES, name)

    def list_objects(self, kind, namespace=None, label_selector=None, field_selector=None):
        return []

    def list_metadata(self, kind, namespace=None, label_selector=None, field_selector=None, first=None):
        return []

    def get_metadata(self, kind, namespace, name):
        return {"kind": kind, "metadata": {"name": name}}


def run(*argv, kube=None):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1"},
                      connect=lambda kubeconfig, context: kube or FakeKube())
    code = main(list(argv), env=env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


def test_bad_target_syntax_is_a_usage_error():
    code, _, err = run("check", "rs/web")
    assert code == 2 and "not one of" in err and "Traceback" not in err


def test_unknown_service_is_exit_3_naming_the_service():
    code, _, err = run("check", "svc/nope", "-n", "demo")
    assert code == 3
    assert err.count("\n") <= 2 and "service 'nope' not found in namespace 'demo'" in err


def test_unknown_service_in_a_missing_namespace_says_the_namespace_is_missing():
    code, _, err = run("check", "web", "-n", "nosuchns")
    assert code == 3 and "namespace 'nosuchns' does not exist" in err


def test_unreadable_kubeconfig_is_a_usage_error(tmp_path):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={})
    code = main(["check", "web", "--kubeconfig", str(tmp_path / "missing")], env=env)
    assert code == 2 and "kubeconfig" in env.stderr.getvalue()


def test_plan_prints_probes_and_steps_and_creates_nothing():
    code, out, _ = run("check", "svc/web", "-n", "demo", "--plan")
    assert code == 0
    assert "source: namespace demo, node node-a" in out  # a node without a backend
    assert "ND-POD-001" in out and "ND-DNS-002" in out
    assert "nodes sampled:\n  node-a: the source's node\n  node-b: hosts backend web-1\n" in out


def test_unknown_output_format_is_a_usage_error():
    code, _, err = run("check", "web", "-o", "yaml")
    assert code == 2 and "unknown output format" in err
