"""Bad input is refused before anything is created (issue 11 item 7), and a read-only user still
gets the layers the API objects can judge (item 6): `netdoctor check` in-process against a fake of
our own cluster wrapper that records every create, and the kubeconfig's exec credential plugins
run for real in a subprocess (the stray `ERROR:root:` line is the process's stderr). Last, the
source's own view (item 5): a --from pod's resolv.conf by the kubelet's rules, and the verdict on
a search list that cannot complete the name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import yaml

import fakenodes
from netdoctor.cli import main
from netdoctor.cluster.kube import Forbidden, NotFound
from netdoctor.cluster.objects import Deployment, EndpointSlice, Node, Pod, Service
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.labels import parse

sys.path.insert(0, str(Path(__file__).parent))

NODES = ("node-a", "node-b")


def _pod(ns, name, labels, node, ip, ports=()):
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"namespace": ns, "name": name, "uid": f"uid-{name}", "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": list(ports)}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "c", "ready": True, "state": {"running": {}}}]}}


def _forbidden(verb: str, resource: str, namespace: str | None) -> Forbidden:
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = f'{resource} is forbidden: User "viewer" cannot {verb} resource "{resource}" in API group "" {where}'
    return Forbidden(message, status=403, reason="Forbidden", server_message=message)


class FakeCluster:
    """A shop with a Service `web` (80/TCP named http → http 8080), a bare pod `solo` with a named
    port, kube-dns, and a Deployment `toolbox` in `ops`. Reads of (kind, namespace) in `forbid`
    are refused; every create is recorded, then refused as a read-only user's would be."""

    namespace = "default"

    def __init__(self, forbid=()):
        self.forbid = set(forbid)
        self.created: list[tuple[str, str]] = []
        self.objects = {
            "Namespace": [{"metadata": {"name": n}} for n in ("demo", "kube-system", "ops")],
            "Service": [
                {"metadata": {"namespace": "demo", "name": "web"},
                 "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "web"},
                          "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}},
                {"metadata": {"namespace": "kube-system", "name": "kube-dns"},
                 "spec": {"clusterIP": "10.96.0.10", "selector": {"k8s-app": "kube-dns"},
                          "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}},
            ],
            "Pod": [
                _pod("demo", "web-1", {"app": "web"}, "node-b", "10.244.1.5", [{"name": "http", "containerPort": 8080}]),
                _pod("demo", "solo", {"run": "solo"}, "node-a", "10.244.0.9", [{"name": "metrics", "containerPort": 9090}]),
                _pod("kube-system", "coredns-1", {"k8s-app": "kube-dns"}, "node-a", "10.244.0.2"),
                _pod("ops", "toolbox-1", {"app": "toolbox"}, "node-a", "10.244.0.30"),
            ],
            "NetworkPolicy": [],
            "Deployment": [{"metadata": {"namespace": "ops", "name": "toolbox"},
                            "spec": {"selector": {"matchLabels": {"app": "toolbox"}}, "replicas": 1,
                                     "template": {"metadata": {"labels": {"app": "toolbox"}}}}}],
        }

    # reads ------------------------------------------------------------------------------
    def _guard(self, kind, namespace, verb="list"):
        if (kind, namespace) in self.forbid or (kind, "*") in self.forbid:
            raise _forbidden(verb, kind.lower() + "s", namespace)

    def list_objects(self, kind, namespace=None, label_selector=None, field_selector=None):
        self._guard(kind, namespace)
        selector = parse(label_selector) if label_selector else None
        return [dict(o, kind=kind) for o in self.objects.get(kind, [])
                if namespace in (None, o["metadata"].get("namespace"))
                and (selector is None or selector.matches(o["metadata"].get("labels") or {}))]

    def get_object(self, kind, namespace, name):
        self._guard(kind, namespace, "get")
        found = [o for o in self.list_objects(kind, namespace) if o["metadata"]["name"] == name]
        if not found:
            raise NotFound(kind.lower() + "s", name, namespace, f'{kind.lower()}s "{name}" not found')
        return found[0]

    def get_namespace(self, name):
        return self.get_object("Namespace", None, name)

    def nodes(self, label_selector=None, field_selector=None, first=None):
        self._guard("Node", None)
        return fakenodes.select(self._nodes(), label_selector, field_selector, first)

    def node(self, name):
        self._guard("Node", None, "get")
        return fakenodes.named(self._nodes(), name)

    @staticmethod
    def _nodes():
        return [Node(n, f"192.168.0.{i}", True) for i, n in enumerate(NODES, 1)]

    def list_metadata(self, kind, namespace=None, label_selector=None, field_selector=None, first=None):
        if kind == "Node":
            self._guard("Node", None)
            return [{"kind": kind, "metadata": {"name": n.name}} for n in self._nodes()][:first]
        return [{"kind": kind, "metadata": o["metadata"]}
                for o in self.list_objects(kind, namespace, label_selector, field_selector)][:first]

    def get_metadata(self, kind, namespace, name):
        return {"kind": kind, "metadata": self.get_object(kind, namespace, name)["metadata"]}

    def service(self, namespace, name):
        return Service.from_api(self.get_object("Service", namespace, name))

    def pod(self, namespace, name):
        return Pod.from_api(self.get_object("Pod", namespace, name))

    def pods(self, namespace, label_selector=None, field_selector=None):
        return [Pod.from_api(o) for o in self.list_objects("Pod", namespace, label_selector)]

    def deployment(self, namespace, name):
        return Deployment.from_api(self.get_object("Deployment", namespace, name))

    def endpoint_slices(self, namespace, service):
        return [EndpointSlice("demo", "web-x", "web", "IPv4", (), ())] if namespace == "demo" else []

    # writes: a read-only user ------------------------------------------------------------
    def _create(self, kind, namespace):
        self.created.append((kind, namespace))
        raise _forbidden("create", kind.lower() + "s", namespace)

    def create_job(self, namespace, body):
        return self._create("Job", namespace)

    def create_config_map(self, namespace, body):
        return self._create("ConfigMap", namespace)

    def create_pod(self, namespace, body):
        return self._create("Pod", namespace)

    def exec(self, namespace, pod, command, container=None, *, timeout):
        raise _forbidden("create", "pods/exec", namespace)

    def exec_stream(self, *args, **kwargs):
        raise _forbidden("create", "pods/exec", args[0])

    def delete(self, kind, namespace, name, *, timeout=None):
        raise AssertionError(f"nothing was created, yet {kind} {namespace}/{name} is deleted")

    def stop_execs(self):
        pass


def run(*argv, cluster=None):
    cluster = cluster or FakeCluster()
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1"},
                      connect=lambda kubeconfig, context: cluster)
    code = main(list(argv), env=env)
    return code, env.stdout.getvalue(), env.stderr.getvalue(), cluster


def assert_refused(code, err, cluster, *needles, exit_code=ExitCode.USAGE):
    """One `error:` line (and at most a `hint:`), the exit code, nothing created."""
    lines = err.strip().splitlines()
    assert code == exit_code, err
    assert lines and lines[0].startswith("error: ") and len(lines) <= 2, err
    assert all(line.startswith("hint: ") for line in lines[1:]), err
    assert "Traceback" not in err and "ERROR:root" not in err
    for needle in needles:
        assert needle in lines[0], err
    assert cluster is None or cluster.created == [], cluster.created


CHECK = ("check", "svc/web", "-n", "demo", "--capture", "off")
LONG = "a" * 254


@pytest.mark.parametrize("argv,needles", [
    (("--port", "0"), ("between 1 and 65535",)),
    (("--port", "70000"), ("between 1 and 65535",)),
    (("--port", "abc"), ("no such port", "TCP/80 (http)")),
    (("--port", "a-missing-name"), ("no such port", "TCP/80 (http)")),
    (("--port", "UDP/80"), ("no such port", "TCP/80 (http)")),
    (("--port", "81"), ("no such port",)),
    (("--port", "ICMP/80"), ("TCP, UDP, SCTP",)),
    (("--port", "-x"), ("neither a port number",)),
    (("--timeout", "abc"), ("Invalid value for '--timeout': 'abc' is not a valid float.",)),
    (("--max-nodes", "3.5"), ("Invalid value for '--max-nodes': '3.5' is not a valid integer.",)),
    (("--timeout", "inf"), ("--timeout inf", "0.1 to 300")),
    (("--timeout", "nan"), ("--timeout nan",)),
    (("--timeout", "0"), ("0.1 to 300",)),
    (("--timeout", "301"), ("0.1 to 300",)),
    (("--nodes", "node-9"), ("'node-9'", "nodes: node-a, node-b")),
    (("--nodes", "node-a,,node-b"), ("node names separated by commas",)),
    (("--max-nodes", "0"), ("--max-nodes 0: use a number from 1 to 100",)),
    (("--capture", "auto", "--capture-namespace", "nope"), ("'nope'", "demo, kube-system, ops")),
    (("--capture-namespace", "Bad_NS"), ("not a valid namespace name",)),
    (("--from", "deploy/" + LONG), ("at most 253 characters, this one has 254",)),
    (("--from", "ops/deploy/toolbox", "--from-namespace", "other"), ("give one",)),
    (("--from-namespace", "ops"), ("needs --from",)),
])
def test_bad_options_are_refused_with_one_line_before_anything_is_created(argv, needles):
    code, out, err, cluster = run(*CHECK, *argv)
    assert_refused(code, err, cluster, *needles)
    assert out == ""


@pytest.mark.parametrize("argv,needles", [
    (("check", "svc/" + "s" * 64, "-n", "demo"), ("a Service name is at most 63 characters, this one has 64",)),
    (("check", "pod/" + LONG, "-n", "demo"), ("a pod name is at most 253 characters",)),
    (("check", "svc/web", "-n", "n" * 64), ("a namespace name is at most 63 characters, this one has 64",)),
    (("check", "svc/9web", "-n", "demo"), ("starting with a letter",)),
])
def test_over_long_or_malformed_names_say_why(argv, needles):
    code, _, err, cluster = run(*argv)
    assert_refused(code, err, cluster, *needles)


def test_a_port_is_accepted_by_number_name_or_proto_num():
    for port in ("80", "http", "TCP/80", "tcp/80"):
        code, out, err, cluster = run(*CHECK, "--port", port, "--plan")
        assert code == ExitCode.OK, (port, err)
        assert "10.96.0.20:80" in out and cluster.created == []


def test_without_a_service_port_is_the_container_port():
    code, out, err, _ = run("check", "pod/solo", "-n", "demo", "--port", "metrics", "--plan")
    assert code == ExitCode.OK and ":9090" in out, err
    code, _, err, cluster = run("check", "pod/solo", "-n", "demo", "--port", "http", "--capture", "off")
    assert_refused(code, err, cluster, "named 'http'", "TCP/9090 (metrics)")
    code, _, err, cluster = run("check", "pod/solo", "-n", "demo", "--port", "65536")
    assert_refused(code, err, cluster, "between 1 and 65535")


def test_capture_namespace_that_cannot_be_listed_says_so():
    cluster = FakeCluster(forbid={("Namespace", None)})
    code, _, err, _ = run(*CHECK[:-2], "--capture-namespace", "nope", cluster=cluster)
    # the namespace itself can't be read either: left to the probes' creation, which RBAC refuses
    assert code == ExitCode.PROBES, err
    cluster = FakeCluster()
    cluster.objects["Namespace"] = [n for n in cluster.objects["Namespace"] if n["metadata"]["name"] != "ops"]
    real = cluster.list_objects

    def no_listing(kind, namespace=None, *args):
        if kind == "Namespace" and namespace is None:
            raise _forbidden("list", "namespaces", None)
        return real(kind, namespace, *args)

    cluster.get_namespace = lambda name: real("Namespace")[0] if name == "demo" else (_ for _ in ()).throw(
        NotFound("namespaces", name, None, f'namespaces "{name}" not found'))
    cluster.list_objects = no_listing
    code, _, err, _ = run(*CHECK[:-2], "--capture-namespace", "ops", cluster=cluster)
    assert_refused(code, err, cluster, "no such namespace", "cannot be listed")


def test_pcap_must_be_a_writable_directory_and_is_created_if_missing(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad in (afile, afile / "sub"):
        code, _, err, cluster = run(*CHECK[:-2], "--pcap", str(bad))
        assert_refused(code, err, cluster)
    missing = tmp_path / "new" / "pcaps"
    code, out, err, cluster = run(*CHECK[:-2], "--pcap", str(missing), "-o", "json")
    assert missing.is_dir()  # made before the probes, which this read-only user may not create
    assert code == ExitCode.PROBES and json.loads(out)["layers"], err


def test_read_only_user_gets_the_api_layers_on_stdout_then_the_probe_error():
    code, out, err, cluster = run("check", "svc/web", "-n", "demo", "-o", "json")
    assert code == ExitCode.PROBES
    report = json.loads(out)
    states = {layer["id"]: layer["state"] for layer in report["layers"]}
    assert states["target"] in ("pass", "warn", "error") and states["policy"] != "error", states
    assert {"endpoints", "policy"} <= set(states)
    pod = next(layer for layer in report["layers"] if layer["id"] == "pod")
    assert pod["state"] == "error" and "the probes cannot be created" in json.dumps(pod)
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: the probes cannot be created: ") and "forbidden" in lines[0]
    assert lines[1].startswith("hint: ") and "without probes these layers cannot run: dns, node, pod, service" in lines[1]
    assert cluster.created and "Traceback" not in err


def test_what_a_read_only_user_may_not_read_costs_its_layer_not_the_run():
    cluster = FakeCluster(forbid={("Node", None), ("Service", "kube-system"), ("Pod", "kube-system"),
                                  ("NetworkPolicy", "kube-system")})
    code, out, err, _ = run("check", "svc/web", "-n", "demo", "-o", "json", cluster=cluster)
    assert code == ExitCode.PROBES, err
    report = json.loads(out)
    notes = "\n".join(report["notes"])
    assert "cannot read nodes (nodes is forbidden" in notes and "cross-node" in notes
    assert "cannot read pods in namespace kube-system" in notes and "ND-DNS-005" in notes
    dns = next(layer for layer in report["layers"] if layer["id"] == "dns")
    backends = next(c for c in dns["checks"] if c["id"] == "ND-DNS-005")
    assert backends["state"] == "skip" and "cannot read the DNS pods" in backends["message"]
    policy = next(layer for layer in report["layers"] if layer["id"] == "policy")
    assert policy["state"] != "error", policy


def test_from_another_namespace_runs_the_probes_there_with_its_labels():
    for argv in (("--from", "ops/deploy/toolbox"), ("--from", "deploy/toolbox", "--from-namespace", "ops")):
        code, out, err, _ = run("check", "svc/web", "-n", "demo", *argv, "--plan")
        assert code == ExitCode.OK, err
        assert "source: namespace ops, node node-a, impersonating pod/toolbox-1" in out
        assert "resolve web.demo" in out  # the name the source would use from its namespace


# ---------------------------------------------------------------- exec credential plugins


def plugin_kubeconfig(path: Path, command: str, *args: str) -> str:
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "eks",
              "contexts": [{"name": "eks", "context": {"cluster": "k", "user": "u"}}],
              "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
              "users": [{"name": "u", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                                        "command": command, "args": list(args)}}}]}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def netdoctor(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdoctor", *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})


def test_a_missing_credential_plugin_is_named_without_a_stray_log_line(tmp_path):
    config = plugin_kubeconfig(tmp_path / "config", str(tmp_path / "gke-gcloud-auth-plugin"))
    done = netdoctor("check", "svc/web", "-n", "demo", "--kubeconfig", config)
    assert_refused(done.returncode, done.stderr, None, "credential plugin 'gke-gcloud-auth-plugin' is not installed",
                   exit_code=ExitCode.CLUSTER)
    assert "gcloud components install gke-gcloud-auth-plugin" in done.stderr
    assert "credentials rejected" not in done.stderr and done.stdout == ""


def test_a_failing_credential_plugin_says_its_exit_code_and_stderr(tmp_path):
    config = plugin_kubeconfig(tmp_path / "config", "sh", "-c", "echo 'the SSO session has expired' >&2; exit 1")
    done = netdoctor("check", "svc/web", "-n", "demo", "--kubeconfig", config)
    assert_refused(done.returncode, done.stderr, None, "credential plugin 'sh' exited 1: the SSO session has expired",
                   exit_code=ExitCode.CLUSTER)
    assert "credentials rejected" not in done.stderr


# ---------------------------------------------------------------- the source's own view


@pytest.mark.parametrize("spec,expected", [
    ({}, (("10.96.0.10",), ("ops.svc.cluster.local", "svc.cluster.local", "cluster.local"), 5)),
    ({"dnsPolicy": "ClusterFirstWithHostNet", "hostNetwork": True,
      "dnsConfig": {"searches": ["corp.example"], "options": [{"name": "ndots", "value": "2"}]}},
     (("10.96.0.10",), ("ops.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"), 2)),
    ({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["ops.svc.cluster.local"]}},
     (("1.1.1.1",), ("ops.svc.cluster.local",), 1)),
    ({"dnsPolicy": "Default"}, None),
    ({"dnsPolicy": "ClusterFirst", "hostNetwork": True}, None),
    ({"dnsPolicy": "None"}, None),
])
def test_the_source_resolv_conf_is_derived_by_the_kubelets_rules(spec, expected):
    from netdoctor.check.resolve import source_dns

    view = source_dns(spec, "ops", "10.96.0.10")
    derived = view.derived
    assert (derived and (derived.nameservers, derived.search, derived.ndots)) == expected or (
        expected is None and derived is None), view
    assert view.basis.startswith(f"dnsPolicy {spec.get('dnsPolicy', 'ClusterFirst')}")


def test_a_short_name_the_source_search_list_cannot_complete_fails_dns_naming_the_list():
    from test_judge import Cluster, facts, run as judged  # the judge's table

    from netdoctor.model import Layer, ReadResolvConf, State
    from netdoctor.observations import DnsOutcome, DnsResult, ResolvConf

    narrow = ResolvConf(("10.96.0.10",), ("ops.svc.cluster.local",), 5, derived="exec failed; derived from its "
                        "dnsPolicy None and dnsConfig")

    class Narrow(Cluster):
        def _result(self, action, node, f):
            return narrow if isinstance(action, ReadResolvConf) else super()._result(action, node, f)

    def answer(server, name, attempt):  # only the FQDN exists
        if name == "web.demo.svc.cluster.local.":
            return None
        return DnsResult(name, "A", server, DnsOutcome.NXDOMAIN, attempt)

    f = facts(source_pod="tool-1", source_namespace="ops", source="pod/tool-1 on node-a")
    report = judged(f, Narrow(dns=answer))
    d = report.diagnosis
    assert (d.layer, d.check_id, d.cause, d.state) == (Layer.DNS, "ND-DNS-002", "search-path", State.FAIL)
    assert "web.demo does not resolve from pod/tool-1 on node-a: its search list (ops.svc.cluster.local, ndots 5)" \
        in d.headline and "web.demo.svc.cluster.local, which resolves" in d.headline
    resolv = next(c for layer in report.layers for c in layer.checks if c.check_id == "ND-DNS-001")
    assert any("derived from its dnsPolicy None" in line for line in resolv.evidence)
