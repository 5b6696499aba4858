"""Writes the kubeconfig that points the official client (and kubectl) at a lab's API server.

Called when a lab starts. Three contexts: `<lab>` (admin, namespace default, current),
`<lab>-limited` (read-only user) and `<lab>-nojobs` (may not create Jobs), all trusting the lab CA
through certificate-authority-data.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from netdoctor.lab.api.auth import ADMIN_USER, LIMITED_USER, NO_JOBS_USER
from netdoctor.lab.api.pki import TlsFiles


def build(lab_name: str, port: int, tls: TlsFiles, tokens: Mapping[str, str]) -> dict:
    """The kubeconfig document; tokens is {token: user name} as given to the ApiServer."""
    by_user = {user: token for token, user in tokens.items()}
    ca_data = base64.b64encode(tls.ca_cert.read_bytes()).decode()
    admin, limited, nojobs = f"{lab_name}-admin", f"{lab_name}-limited", f"{lab_name}-nojobs"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": lab_name, "cluster": {"server": f"https://127.0.0.1:{port}",
                                                    "certificate-authority-data": ca_data}}],
        "users": [{"name": admin, "user": {"token": by_user[ADMIN_USER]}},
                  {"name": limited, "user": {"token": by_user[LIMITED_USER]}},
                  {"name": nojobs, "user": {"token": by_user[NO_JOBS_USER]}}],
        "contexts": [{"name": lab_name, "context": {"cluster": lab_name, "user": admin, "namespace": "default"}},
                     {"name": limited, "context": {"cluster": lab_name, "user": limited, "namespace": "default"}},
                     {"name": nojobs, "context": {"cluster": lab_name, "user": nojobs, "namespace": "default"}}],
        "current-context": lab_name,
        "preferences": {},
    }


def write(path: Path, lab_name: str, port: int, tls: TlsFiles, tokens: Mapping[str, str]) -> Path:
    """Write the kubeconfig (mode 0600, it holds tokens) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(build(lab_name, port, tls, tokens), out, sort_keys=False)
    return path
