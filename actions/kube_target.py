"""The only way an action reaches the Kubernetes API: a checked namespace, then a checked object.

Alert labels come from event fields any producer chooses, and actions build their
targets from labels. So a namespace or a name from a label is untrusted until it has
been checked, and the check must come before any request, reads included (a plan that
reads ``kube-system`` has already told a forger what is there and spent the agent's
RBAC on it). Instead of trusting every action, and every future one, to remember that,
the check is a type:

* :class:`KubeScope` is built from the agent's API client and its namespace
  allow-list (``WATCHKEEPER_ACTIONS_NAMESPACES``). :meth:`KubeScope.namespace` is the only
  maker of a :class:`KubeNamespace`: a DNS-1123 label (63 characters) in the allow-list
  (without one: any but Kubernetes' own ``kube-*`` namespaces).
* :meth:`KubeNamespace.object` is the only maker of a :class:`KubeTarget`: one object of
  one kind, its name a DNS-1123 subdomain (253 characters; Jobs and Leases: a label,
  63, because the name becomes a label value).
* The wrappers in :mod:`actions.kube`, :mod:`actions.kube_hpa`, :mod:`actions.kube_jobs`
  and :mod:`actions.lease` take a ``KubeNamespace`` or ``KubeTarget``, never a raw
  client and strings, and get the API client from it. An unchecked value has no way
  in: both classes refuse construction outside their factory (a private seal), and
  re-check their names when they are made.

A refusal raises :class:`TargetRefused` (an ``ActionFailed``) naming the guard
(``namespace`` or ``kube-name``); the remediator audits it as ``skipped`` by that guard
and counts it, like any other guard refusal.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Literal

from .base import NotConfigured, TargetRefused

__all__ = ["KubeNamespace", "KubeScope", "KubeTarget", "ObjectKind", "check_label", "check_subdomain"]

ObjectKind = Literal["deployment", "hpa", "job", "lease"]

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253
_LABEL_NAMED: frozenset[str] = frozenset({"job", "lease"})
"""Kinds whose names must also be a label (a Job's name becomes its Pods' ``job-name`` label)."""
_SEAL = object()
_SYSTEM_PREFIX = "kube-"
"""Kubernetes' own namespaces (kube-system, kube-public, kube-node-lease): never a target unless listed by name."""


def _shown(value: str) -> str:
    """A bounded, quoted rendering of an untrusted value for error messages and audit."""
    return repr(value[:80] + ("..." if len(value) > 80 else ""))


def check_label(value: str, what: str) -> str:
    """``value`` if it is a DNS-1123 label (lower-case alphanumerics and ``-``, 63 at most).

    >>> check_label("ml-serving", "namespace")
    'ml-serving'
    >>> check_label("../x", "namespace")
    Traceback (most recent call last):
    ...
    actions.base.TargetRefused: namespace '../x' is not a valid Kubernetes name (a DNS-1123 label: a-z, 0-9, '-', at most 63)
    """
    if not isinstance(value, str) or not 0 < len(value) <= LABEL_MAX or not _LABEL.fullmatch(value):
        raise TargetRefused(
            "kube-name",
            f"{what} {_shown(str(value))} is not a valid Kubernetes name (a DNS-1123 label: a-z, 0-9, '-', at most {LABEL_MAX})",
        )
    return value


def check_subdomain(value: str, what: str) -> str:
    """``value`` if it is a DNS-1123 subdomain (labels joined by ``.``, 253 at most).

    >>> check_subdomain("ranker.v2", "deployment")
    'ranker.v2'
    >>> check_subdomain("a/b", "deployment")
    Traceback (most recent call last):
    ...
    actions.base.TargetRefused: deployment 'a/b' is not a valid Kubernetes name (a DNS-1123 subdomain: a-z, 0-9, '-', '.', at most 253)
    """
    if not isinstance(value, str) or not 0 < len(value) <= SUBDOMAIN_MAX or not _SUBDOMAIN.fullmatch(value):
        raise TargetRefused(
            "kube-name",
            f"{what} {_shown(str(value))} is not a valid Kubernetes name "
            f"(a DNS-1123 subdomain: a-z, 0-9, '-', '.', at most {SUBDOMAIN_MAX})",
        )
    return value


class KubeScope:
    """The API client and the namespaces actions may touch; the only maker of :class:`KubeNamespace`.

    Parameters
    ----------
    api_client
        An official-client ``ApiClient``, or None when the agent has no cluster (every
        use then raises ``NotConfigured``, after the names were checked).
    namespaces
        The allow-list; None allows every valid namespace except Kubernetes' own
        (``kube-*``), which only an allow-list naming them opens.
    """

    def __init__(self, api_client: Any, namespaces: Collection[str] | None = None) -> None:
        self._api_client = api_client
        self.namespaces = None if namespaces is None else frozenset(namespaces)

    def namespace(self, name: str, what: str = "namespace") -> KubeNamespace:
        """``name`` checked as a namespace and against the allow-list; ``TargetRefused`` otherwise."""
        self.check(name, what)
        return KubeNamespace(name, self, _seal=_SEAL)

    def check(self, name: str, what: str = "namespace") -> str:
        """``name`` if it is a namespace this scope allows, else ``TargetRefused``."""
        check_label(name, what)
        if self.namespaces is not None and name not in self.namespaces:
            allowed = ", ".join(sorted(self.namespaces)) or "none"
            raise TargetRefused("namespace", f"{what} {name} is not in the allow-list ({allowed})")
        if self.namespaces is None and name.startswith(_SYSTEM_PREFIX):
            raise TargetRefused(
                "namespace", f"{what} {name} is a Kubernetes system namespace; list it in WATCHKEEPER_ACTIONS_NAMESPACES to allow it"
            )
        return name

    def api_client(self) -> Any:
        if self._api_client is None:
            raise NotConfigured("no Kubernetes API client: set WATCHKEEPER_KUBECONFIG or run in a cluster")
        return self._api_client


@dataclass(frozen=True, slots=True)
class KubeNamespace:
    """A namespace that passed :meth:`KubeScope.namespace`; lists and creates happen in one of these."""

    name: str
    scope: KubeScope = field(repr=False, compare=False)
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL or not isinstance(self.scope, KubeScope):
            raise TypeError("a KubeNamespace is made by KubeScope.namespace(), which checks it")
        self.scope.check(self.name)  # again: dataclasses.replace() must not open a way around it

    def object(self, kind: ObjectKind, name: str, what: str | None = None) -> KubeTarget:
        """One object of ``kind`` in this namespace, its name checked; ``TargetRefused`` otherwise."""
        what = what or kind
        (check_label if kind in _LABEL_NAMED else check_subdomain)(name, what)
        return KubeTarget(self, kind, name, _seal=_SEAL)

    def api_client(self) -> Any:
        return self.scope.api_client()


@dataclass(frozen=True, slots=True)
class KubeTarget:
    """One checked object: ``namespace`` (a :class:`KubeNamespace`), ``kind`` and ``name``."""

    namespace: KubeNamespace
    kind: ObjectKind
    name: str
    _seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._seal is not _SEAL or not isinstance(self.namespace, KubeNamespace):
            raise TypeError("a KubeTarget is made by KubeNamespace.object(), which checks it")
        (check_label if self.kind in _LABEL_NAMED else check_subdomain)(self.name, self.kind)

    @property
    def ns(self) -> str:
        return self.namespace.name

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace.name}/{self.name}"

    def api_client(self) -> Any:
        return self.namespace.api_client()
