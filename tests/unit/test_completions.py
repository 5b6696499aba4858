"""completions/ holds what `netdoctor completion SHELL` prints today, and the bash one works."""

import subprocess
from io import StringIO
from pathlib import Path

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"


def generated(shell: str) -> str:
    out = StringIO()
    assert main(["completion", shell], Environment(stdout=out, stderr=StringIO())) == 0
    return out.getvalue()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shipped_scripts_are_not_stale(shell):
    shipped = (COMPLETIONS / f"netdoctor.{shell}").read_text()
    assert shipped == generated(shell), (
        f"completions/netdoctor.{shell} is stale: run `netdoctor completion {shell} > completions/netdoctor.{shell}`")


def complete(line: str, env: dict | None = None) -> list[str]:
    """What bash offers for `line` (the cursor at its end), using the shipped script."""
    words = line.split(" ")
    script = (
        f"source {COMPLETIONS / 'netdoctor.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_netdoctor; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                          env=env).stdout.split()


def test_bash_asks_the_cluster_completer_for_names(tmp_path):
    """-n, --context and targets come from kubectl_complete-netdoctor, given the words typed."""
    fake = tmp_path / "kubectl_complete-netdoctor"
    fake.write_text('#!/bin/sh\necho "$*" > "$(dirname "$0")/asked"\nprintf "shop\\nstaging\\n:4\\n"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    assert complete("netdoctor check svc/api -n s", env) == ["shop", "staging"]
    assert (tmp_path / "asked").read_text() == "check svc/api -n s\n"
    assert complete("netdoctor check svc/api --context ", env) == ["shop", "staging"]
    assert complete("netdoctor check -n shop svc/", env) == ["shop", "staging"]
    assert (tmp_path / "asked").read_text() == "check -n shop svc/\n"
    assert complete("netdoctor check svc/api -o j", env) == ["json", "junit"]  # fixed choices stay local
    assert complete("netdoctor check -n ", {"PATH": "/usr/bin:/bin"}) == []  # no completer: nothing, quietly


def test_bash_completes_commands_options_and_values():
    assert complete("netdoctor ch") == ["check"]
    assert complete("netdoctor lab br") == ["break"]
    assert "kube-proxy-stale" in complete("netdoctor lab break kube")
    assert complete("netdoctor check svc/api --out") == ["--output"]
    assert complete("netdoctor check svc/api -o j") == ["json", "junit"]
    assert complete("netdoctor policy matrix --output ") == ["text", "json"]


def test_unknown_shell_is_a_usage_error():
    err = StringIO()
    assert main(["completion", "tcsh"], Environment(stdout=StringIO(), stderr=err)) == 2
    assert err.getvalue().startswith("error: unknown shell 'tcsh'")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_parse_and_complete(shell):
    import shutil

    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (.ci/run installs it)")
    script = COMPLETIONS / f"netdoctor.{shell}"
    subprocess.run([shell, "-n", str(script)], check=True)
    if shell == "fish":
        out = subprocess.run(["fish", "-c", f"source {script}; complete -C 'netdoctor lab br'"],
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith("break\t")


# --- kubectl_complete-netdoctor: completion with names from the cluster (a fake one here) ---

from netdoctor import completions  # noqa: E402
from netdoctor.cli import completion_tree, kubectl_complete  # noqa: E402

CLUSTER = {("Namespace", None): ["default", "kube-system", "shop"], ("Node", None): ["node-1", "node-2"],
           ("Service", "shop"): ["api", "db"], ("Service", "default"): ["kubernetes"],
           ("Deployment", "shop"): ["api"], ("Pod", "shop"): ["api-1", "frontend-1"],
           ("Pod", "ops"): ["toolbox-1"]}


def kubectl(*words):
    """What `kubectl netdoctor WORDS…<TAB>` offers, and the names the fake cluster was asked for."""
    asked = []

    def names(kind, namespace, kubeconfig, context):
        asked.append((kind, namespace, kubeconfig, context))
        return CLUSTER.get((kind, namespace or "default" if kind not in ("Namespace", "Node") else None), [])

    lister = completions.Lister(lambda kubeconfig: ["dev", "prod"] + (["other"] if kubeconfig else []), names)
    found, directive = completions.complete(completion_tree(), list(words[:-1]), words[-1], lister)
    return found, directive, asked


def test_kubectl_completes_namespaces_contexts_and_choices():
    assert kubectl("check", "svc/api", "-n", "")[:2] == (["default", "kube-system", "shop"], 4)
    assert kubectl("check", "svc/api", "--namespace", "s")[0] == ["shop"]
    assert kubectl("cleanup", "--context", "")[:2] == (["dev", "prod"], 4)
    assert kubectl("check", "--kubeconfig", "/k", "--context", "o")[0] == ["other"]
    assert kubectl("check", "svc/api", "--capture", "")[:2] == (["auto", "strict", "off"], 4)
    assert kubectl("check", "svc/api", "-o", "j")[0] == ["json", "junit"]
    assert kubectl("check", "svc/api", "--output=j")[0] == ["--output=json", "--output=junit"]
    assert kubectl("check", "--kubeconfig", "")[:2] == ([], 0)  # file names: the shell's


def test_kubectl_completes_targets_of_the_namespace_given():
    assert kubectl("check", "")[:2] == (["svc/", "deploy/", "pod/"], 6)  # no space after a kind
    found, directive, asked = kubectl("check", "-n", "shop", "--context", "prod", "svc/")
    assert (found, directive) == (["svc/api", "svc/db"], 4) and asked == [("Service", "shop", None, "prod")]
    assert kubectl("check", "svc/")[0] == ["svc/kubernetes"]  # the context's namespace
    assert kubectl("check", "-n", "shop", "deploy/a")[0] == ["deploy/api"]
    assert kubectl("check", "svc/api", "-n", "shop", "--from", "pod/f")[0] == ["pod/frontend-1"]
    assert kubectl("check", "svc/api", "-n", "shop", "--from-namespace", "ops", "--from", "pod/")[0] == ["pod/toolbox-1"]


def test_kubectl_completes_nodes_one_after_another():
    assert kubectl("check", "svc/api", "--nodes", "")[:2] == (["node-1", "node-2"], 6)
    assert kubectl("check", "svc/api", "--nodes", "node-1,")[0] == ["node-1,node-2"]


def test_kubectl_completes_commands_and_options():
    assert kubectl("ch")[0] == ["check"]
    assert kubectl("policy", "m")[0] == ["matrix"]
    assert "--namespace" in kubectl("check", "svc/api", "--n")[0]
    assert kubectl("lab", "break", "kube")[0] == ["kube-proxy-stale"]
    assert kubectl("schema", "m")[0] == ["matrix"]


def test_kubectl_complete_prints_cobras_protocol_and_stays_quiet_without_a_cluster(tmp_path):
    out, err = StringIO(), StringIO()
    env = Environment(stdout=out, stderr=err, environ={"KUBECONFIG": str(tmp_path / "none")})
    assert kubectl_complete(["check", "-n", ""], env) == 0
    assert (out.getvalue(), err.getvalue()) == (":4\n", "")
    out = StringIO()
    assert kubectl_complete(["check", "--capture", "s"], Environment(stdout=out, stderr=err, environ={})) == 0
    assert out.getvalue() == "strict\n:4\n"


def test_the_plugin_completion_program_is_installed_beside_the_plugin():
    scripts = (COMPLETIONS.parent / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    assert 'kubectl-netdoctor = "netdoctor.cli:main"' in scripts
    assert 'kubectl_complete-netdoctor = "netdoctor.cli:kubectl_complete"' in scripts
