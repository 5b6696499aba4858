"""`netdoctor policy matrix|explain`, run in-process: output, JSON shape, exit codes, live mode."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from policy_world import base, netpol

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.policy import sources

POLICIES = [
    netpol("a/to-api", {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}], "ports": [{"port": "http"}]}]}),
    netpol("a/ignored-egress", {"podSelector": {"matchLabels": {"app": "none"}}, "policyTypes": ["Ingress"],
                                "egress": [{}]}),  # selects no pod
]
BROKEN = netpol("a/broken", {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 9000}]}]})


@pytest.fixture
def manifests(tmp_path):
    directory = tmp_path / "objects"
    (directory / "nested").mkdir(parents=True)
    (directory / "pods.yaml").write_text(yaml.safe_dump_all(base()))
    (directory / "nested" / "policies.yaml").write_text(yaml.safe_dump({"kind": "List", "items": POLICIES}))
    return str(directory)


def run(*argv):
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={"NO_COLOR": "1"}, width=300)
    code = main(list(argv), env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


def test_matrix_json_has_the_fixed_keys(manifests):
    code, out, _ = run("policy", "matrix", "-f", manifests, "-o", "json")
    assert code == ExitCode.OK
    document = json.loads(out)
    cell = next(c for c in document["cells"] if (c["from"], c["to"], c["port"]) == ("a/web", "a/api", 8080))
    assert cell == {"from": "a/web", "to": "a/api", "protocol": "TCP", "port": 8080, "allowed": False, "egress": "not-isolated", "ingress": "denied"}
    assert [(p["policy"], p["kind"]) for p in document["problems"]] == [("a/ignored-egress", "ignored")]
    assert {c["to"] for c in document["cells"]} == {"a/web", "a/api"}  # only they declare ports


def test_matrix_namespace_and_ports(manifests):
    code, out, _ = run("policy", "matrix", "-f", manifests, "-n", "b", "--port", "TCP/443", "-o", "json")
    cells = json.loads(out)["cells"]
    assert code == ExitCode.OK
    assert {(c["from"], c["to"], c["port"], c["allowed"]) for c in cells} == {
        (s, d, 443, True) for s in ("b/client", "b/web") for d in ("b/client", "b/web")
    }


def test_matrix_text_is_a_grid_with_warnings_on_stderr(manifests):
    code, out, err = run("policy", "matrix", "-f", manifests)
    assert code == ExitCode.OK
    assert err == "warning: NetworkPolicy a/ignored-egress: spec.egress: rules are ignored: policyTypes lacks Egress\n"
    assert "warning" not in out
    row = next(line for line in out.splitlines() if line.startswith("│ a/web "))
    assert row.split("│")[2:4] == [" ✗ UDP/53    ", " ✓ TCP/80 "]  # to a/api (first of 3 ports), to a/web
    assert "✗ TCP/8080" in out and "✗ SCTP/9000" in out
    assert "flows allowed" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "ICMP/1"], "invalid port 'ICMP/1'"),
        (["-n", "a", "-A"], "not both"),
        (["-f", "/nonexistent"], "no such file"),
    ],
)
def test_matrix_bad_input_exits_2(manifests, argv, message):
    code, _, err = run("policy", "matrix", "-f", manifests, *argv)
    assert code == ExitCode.USAGE and message in err


def test_explain_denied_exits_1_and_names_the_nearest_miss(manifests):
    code, out, _ = run("policy", "explain", "-f", manifests, "--from", "a/web", "--to", "a/api", "--port", "TCP/http")
    assert code == ExitCode.CHECK_FAILED
    assert "a/web → a/api TCP/8080: DENIED" in out
    assert "egress from a/web: allowed: no policy isolates it" in out
    assert "isolated by: a/to-api" in out
    assert "nearest miss: a/to-api spec.ingress[0]" in out
    assert "label: wants pod label app=frontend, has app=web" in out


def test_explain_allowed_exits_0(manifests):
    code, out, _ = run("policy", "explain", "-f", manifests, "--from", "a/api", "--to", "b/client", "--port", "80")
    assert code == ExitCode.OK and "ALLOWED" in out


def test_explain_to_an_external_address(manifests):
    code, out, _ = run("policy", "explain", "-f", manifests, "--from", "a/web", "--to", "8.8.8.8", "--port", "UDP/53")
    assert code == ExitCode.OK and "ingress to 8.8.8.8: not a pod" in out


@pytest.mark.parametrize(
    "source, destination, port, message",
    [
        ("a/nope", "a/api", "TCP/80", "pod a/nope not found"),
        ("a/web", "a/api", "TCP/metrics", "a/api declares no TCP port named 'metrics'"),
        ("a/web", "a/api", "80/TCP", "invalid port"),
        ("a/b/c", "a/api", "TCP/80", "invalid pod 'a/b/c'"),
    ],
)
def test_explain_bad_input_exits_2(manifests, source, destination, port, message):
    code, _, err = run("policy", "explain", "-f", manifests, "--from", source, "--to", destination, "--port", port)
    assert code == ExitCode.USAGE and message in err


class FakeKube:
    """Our own wrapper's surface, serving the base objects."""

    namespace = "a"

    def __init__(self, objects):
        self.objects = objects
        self.calls = []

    def list_objects(self, kind, namespace):
        self.calls.append((kind, namespace))
        return [
            o for o in self.objects
            if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]


@pytest.fixture
def live(monkeypatch):
    kube = FakeKube(base() + POLICIES)
    monkeypatch.setattr(sources, "connect", lambda kubeconfig, context, environ: kube)
    return kube


def test_live_matrix_defaults_to_the_context_namespace(live):
    code, out, _ = run("policy", "matrix", "-o", "json")
    assert code == ExitCode.OK
    assert {c["from"].split("/")[0] for c in json.loads(out)["cells"]} == {"a"}
    assert live.calls == [("Namespace", None), ("Pod", "a"), ("NetworkPolicy", "a")]


def test_live_matrix_all_namespaces(live):
    code, out, _ = run("policy", "matrix", "-A", "--port", "TCP/80", "-o", "json")
    assert code == ExitCode.OK
    assert {c["from"].split("/")[0] for c in json.loads(out)["cells"]} == {"a", "b", "c"}
    assert ("Pod", None) in live.calls


def test_live_explain_reads_both_namespaces(live):
    code, out, _ = run("policy", "explain", "--from", "b/client", "--to", "api", "--port", "TCP/8080")
    assert code == ExitCode.CHECK_FAILED and "b/client → a/api" in out
    assert ("Pod", "a") in live.calls and ("Pod", "b") in live.calls


@pytest.mark.parametrize("rule, field, message", [
    ({"ports": [{"port": 8080, "endPort": 80}]}, "spec.ingress[0].ports[0]", "endPort 80 is below port 8080"),
    ({"ports": [{"port": 0}]}, "spec.ingress[0].ports[0].port", "0 is not a port number"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}, "spec.ingress[0].from[0].ipBlock.cidr", "is not a CIDR"),
])
def test_matrix_refuses_invalid_policies_with_exit_2(tmp_path, rule, field, message):
    (tmp_path / "pods.yaml").write_text(yaml.safe_dump_all(base()))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(netpol("a/bad", {"podSelector": {}, "ingress": [rule]})))
    code, out, err = run("policy", "matrix", "-f", str(tmp_path))
    assert code == ExitCode.USAGE and out == ""
    warning, error, hint = err.splitlines()
    assert warning.startswith(f"warning: NetworkPolicy a/bad: ignored: {field}") and message in warning
    assert error.startswith("error: 1 invalid NetworkPolicy field(s), first: a/bad ") and message in error
    assert hint.startswith("hint: ")
    code, out, _ = run("policy", "matrix", "-f", str(tmp_path), "-o", "json")
    document = json.loads(out)
    assert code == ExitCode.USAGE and document["error"]["exit_code"] == 2
    assert [(p["policy"], p["kind"]) for p in document["problems"]] == [("a/bad", "invalid")]


def test_matrix_refuses_a_directory_without_manifests_and_empty_files(tmp_path):
    (tmp_path / "notes.txt").write_text("no YAML here")
    code, out, err = run("policy", "matrix", "-f", str(tmp_path))
    assert code == ExitCode.USAGE and out == "" and err.startswith(f"error: {tmp_path}: no manifests in this directory")
    empty = tmp_path / "empty.yaml"
    empty.write_text("---\n# nothing\n")
    code, _, err = run("policy", "matrix", "-f", str(empty))
    assert code == ExitCode.USAGE and err.startswith(f"error: no Kubernetes objects in {empty}")


def test_matrix_never_truncates_names_on_a_narrow_terminal(tmp_path):
    long = "a-pod-with-a-name-far-longer-than-a-column-of-the-grid"
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{long}-{i}", "namespace": "shop",
                                                             "labels": {"app": "x"}},
             "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}} for i in range(4)]
    (tmp_path / "pods.yaml").write_text(yaml.safe_dump_all(pods))
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={"NO_COLOR": "1"}, width=60)
    assert main(["policy", "matrix", "-f", str(tmp_path)], env) == 0
    out = env.stdout.getvalue()
    assert "…" not in out
    joined = "".join(cell.strip() for line in out.splitlines() for cell in line.split("│")[1:2])
    assert all(f"shop/{long}-{i}" in joined for i in range(4))  # each name whole, folded onto lines


def test_matrix_off_a_terminal_is_not_wrapped(manifests):
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ={"NO_COLOR": "1"})
    assert main(["policy", "matrix", "-f", manifests], env) == 0
    assert max(map(len, env.stdout.getvalue().splitlines())) > 80  # the grid as wide as it is
