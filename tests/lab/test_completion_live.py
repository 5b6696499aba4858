"""`kubectl netdoctor …<TAB>` against the lab: kubectl runs `kubectl_complete-netdoctor` with the
words typed so far, and it offers the lab's namespaces, its kubeconfig's contexts and the Services
of the namespace given with -n, read through the lab's API server within a fraction of a second;
an unreachable cluster offers nothing, silently."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from io import StringIO

import pytest

from netdoctor.cli import kubectl_complete
from netdoctor.environment import Environment
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import start, unique_name

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def offered(lab, *words: str) -> tuple[list[str], str, float]:
    out = StringIO()
    began = time.monotonic()
    assert kubectl_complete(list(words), Environment(stdout=out, stderr=StringIO(),
                                                    environ={"KUBECONFIG": lab.kubeconfig})) == 0
    took = time.monotonic() - began
    *candidates, directive = out.getvalue().splitlines()
    return candidates, directive, took


def test_namespaces_complete_after_n(lab):
    found, directive, took = offered(lab, "check", "svc/api", "-n", "")
    assert {"shop", "kube-system", "default"} <= set(found) and directive == ":4", found
    assert offered(lab, "check", "svc/api", "--namespace", "sh")[0] == ["shop"]
    assert took < 2.0, took


def test_contexts_complete_after_context(lab):
    found, directive, _ = offered(lab, "check", "--context", "")
    assert found == sorted([lab.name, f"{lab.name}-limited", f"{lab.name}-nojobs"]) and directive == ":4"
    assert offered(lab, "policy", "matrix", "--context", f"{lab.name}-l")[0] == [f"{lab.name}-limited"]


def test_services_of_the_namespace_complete_after_svc(lab):
    found, directive, took = offered(lab, "check", "-n", "shop", "svc/")
    assert "svc/api" in found and all(name.startswith("svc/") for name in found) and directive == ":4", found
    assert offered(lab, "check", "-n", "kube-system", "svc/")[0] == ["svc/kube-dns"]
    assert offered(lab, "check", "-n", "shop", "--context", lab.name, "svc/a")[0] == ["svc/api"]
    assert took < 2.0, took


def test_deployments_pods_and_nodes_complete_too(lab):
    assert "deploy/api" in offered(lab, "check", "-n", "shop", "deploy/")[0]
    pods = offered(lab, "check", "svc/api", "-n", "shop", "--from", "pod/")[0]
    assert pods and all(p.startswith("pod/") for p in pods)
    nodes, directive, _ = offered(lab, "check", "svc/api", "--nodes", "")
    assert "node-1" in nodes and directive == ":6"


def test_the_installed_program_answers_and_an_unreachable_cluster_offers_nothing(lab, tmp_path):
    script = "from netdoctor.cli import kubectl_complete; raise SystemExit(kubectl_complete())"
    done = subprocess.run([sys.executable, "-c", script, "check", "-n", "shop", "svc/"], capture_output=True,
                          text=True, env={"KUBECONFIG": lab.kubeconfig, "PATH": "/usr/bin:/bin"}, timeout=30)
    assert done.returncode == 0 and "svc/api" in done.stdout.splitlines() and done.stderr == "", done
    broken = tmp_path / "kubeconfig"
    broken.write_text(re.sub(r"https://127\.0\.0\.1:\d+", "https://127.0.0.1:1", open(lab.kubeconfig).read()))
    done = subprocess.run([sys.executable, "-c", script, "check", "-n", ""], capture_output=True, text=True,
                          env={"KUBECONFIG": str(broken), "PATH": "/usr/bin:/bin"}, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, ":4\n", "")
