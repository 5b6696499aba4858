"""Bearer-token authentication and the lab's authorization policy for its three users.

The server calls `authenticate()` on every request but the public health/version endpoints, then
`authorize()` with the request's verb and resource. `admin` may do everything; `limited` may only
get, list and watch, and nothing in kube-system (a viewer of the apps' namespaces, as RBAC often
grants); `nojobs` may do everything but write Jobs (a user netdoctor's run owner is
refused to). Failures are the real 401/403 Status objects.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from netdoctor.lab.api.status import ApiError

ADMIN_USER = "lab-admin"
LIMITED_USER = "lab-limited"
NO_JOBS_USER = "lab-nojobs"
READ_VERBS = frozenset({"get", "list", "watch"})
LIMITED_UNREADABLE = frozenset({"kube-system"})  # namespaces the read-only user may not even read


def new_tokens() -> dict[str, str]:
    """Fresh random tokens for the lab users, as {token: user name}."""
    return {secrets.token_urlsafe(24): user for user in (ADMIN_USER, LIMITED_USER, NO_JOBS_USER)}


def authenticate(authorization: str | None, tokens: Mapping[str, str]) -> str:
    """The user behind an `Authorization: Bearer …` header; ApiError 401 otherwise."""
    scheme, _, token = (authorization or "").partition(" ")
    user = tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if user is None:
        raise ApiError(401, "Unauthorized")
    return user


def authorize(user: str, verb: str, resource: str, group: str, namespace: str | None,
              name: str | None = None, subresource: str | None = None) -> None:
    """ApiError 403 with the real RBAC message when `user` may not do this."""
    if user == NO_JOBS_USER and (group, resource) != ("batch", "jobs"):
        return
    hidden = user == LIMITED_USER and namespace in LIMITED_UNREADABLE
    if user not in (LIMITED_USER, NO_JOBS_USER) or (verb in READ_VERBS and not hidden):
        return
    qualified = f"{resource}.{group}" if group else resource
    subject = f'{qualified} "{name}"' if name else qualified
    full = f"{resource}/{subresource}" if subresource else resource
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    details = {**({"name": name} if name else {}), **({"group": group} if group else {}), "kind": resource}
    raise ApiError(
        403,
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{full}" in API group "{group}" {scope}',
        details=details,
    )
