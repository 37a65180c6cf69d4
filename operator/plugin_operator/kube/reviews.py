"""TokenReview (who is this token?) and SubjectAccessReview (may they do this?)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from plugin_operator.kube.rest import KubeApi


@dataclass(frozen=True)
class Identity:
    """A Kubernetes user as a TokenReview names it and a SubjectAccessReview asks about it;
    the empty username is nobody (an anonymous caller)."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def anonymous(self) -> bool:
        return not self.username


async def review_token(api: KubeApi, token: str,
                       audiences: Sequence[str] = ()) -> Identity | None:
    """The user a bearer token belongs to, or None when the apiserver rejects it."""
    spec: dict[str, object] = {"token": token}
    if audiences:
        spec["audiences"] = list(audiences)
    answer = await api.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                               body={"apiVersion": "authentication.k8s.io/v1",
                                      "kind": "TokenReview", "spec": spec})
    status = answer.get("status") or {}
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    extra = tuple(sorted((str(k), tuple(str(v) for v in values))
                         for k, values in (user.get("extra") or {}).items()))
    return Identity(str(user.get("username", "")), str(user.get("uid", "")),
                        tuple(str(g) for g in user.get("groups") or ()), extra)


async def review_access(api: KubeApi, user: Identity, *, verb: str, group: str,
                        resource: str, namespace: str, name: str = "",
                        subresource: str = "") -> bool:
    """Whether RBAC (or whichever authorizer the cluster runs) allows the request."""
    attributes: Mapping[str, str] = {
        key: value for key, value in {"verb": verb, "group": group, "resource": resource,
                                      "namespace": namespace, "name": name,
                                      "subresource": subresource}.items() if value}
    spec: dict[str, object] = {"user": user.username, "groups": list(user.groups),
                               "resourceAttributes": dict(attributes)}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra}
    answer = await api.request(
        "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": spec})
    return bool((answer.get("status") or {}).get("allowed"))
