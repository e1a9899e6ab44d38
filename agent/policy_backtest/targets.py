"""The simulated world a policy backtest acts on: Deployments, HPAs and registry aliases in memory.

A backtest must never touch a cluster or a registry, yet every guard that depends on
what the target looks like (blast radius at ``max_replicas``, an HPA's ceiling, the
alias already moved, no previous version) has to see a plausible target. This module
holds that target state; the simulated action kinds (``kinds.py``) read and change it
exactly where the real kinds would call the Kubernetes API or MLflow.

A targets file (YAML or JSON) seeds it; anything it does not name is created on first
read from the defaults, so a backtest runs without one::

    defaults: {replicas: 2, versions: 3}
    deployments:
      ml-serving/llm-server: {replicas: 10, hpa: {min: 2, max: 12}}
      ml-serving/checkout: {replicas: 3, rollout: "2 of 3 pods updated"}
    registry:
      model/fraud-detector: {versions: 8, alias_on: 8, bad: [5]}   # the rule names the alias
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import ConfigError

__all__ = ["SimDeployment", "SimEntry", "SimulatedTargets", "load_targets"]


class _Hpa(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min: int = Field(1, ge=0, le=10_000)
    max: int = Field(10, ge=1, le=10_000)


class _Deployment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(2, ge=0, le=10_000)
    hpa: _Hpa | None = None
    rollout: str | None = None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    versions: int = Field(3, ge=1, le=100_000)
    alias_on: int | None = Field(None, ge=1)
    bad: list[int] = Field(default_factory=list)


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(2, ge=0, le=10_000)
    versions: int = Field(3, ge=1, le=100_000)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    defaults: _Defaults = Field(default_factory=_Defaults)
    deployments: dict[str, _Deployment] = Field(default_factory=dict)
    registry: dict[str, _Entry] = Field(default_factory=dict)


@dataclass
class SimDeployment:
    """One Deployment (and the HPA that targets it, if any)."""

    replicas: int
    hpa_min: int | None = None
    hpa_max: int | None = None
    rollout: str | None = None


@dataclass
class SimEntry:
    """One registry entry's alias: who holds it, which versions exist, and its moves (version, decision key)."""

    holder: str
    versions: list[str]
    bad: set[str] = field(default_factory=set)
    moves: list[tuple[str, str, str]] = field(default_factory=list)  # (to, from, decision key)


@dataclass
class SimulatedTargets:
    """Target state by key: ``namespace/name`` for Deployments, ``kind/name`` for registry entries."""

    default_replicas: int = 2
    default_versions: int = 3
    deployments: dict[str, SimDeployment] = field(default_factory=dict)
    registry: dict[str, SimEntry] = field(default_factory=dict)
    #: every change applied, in order: (target key, what) - the report's proof of what would have changed
    changes: list[tuple[str, str]] = field(default_factory=list)

    def deployment(self, namespace: str, name: str) -> SimDeployment:
        key = f"{namespace}/{name}"
        found = self.deployments.get(key)
        if found is None:
            found = self.deployments[key] = SimDeployment(self.default_replicas)
        return found

    def entry(self, kind: str, name: str) -> SimEntry:
        key = f"{kind}/{name}"
        found = self.registry.get(key)
        if found is None:
            versions = [str(v) for v in range(1, self.default_versions + 1)]
            found = self.registry[key] = SimEntry(versions[-1], versions)
        return found


def load_targets(path: Path | None) -> SimulatedTargets:
    """The simulated targets from ``path`` (YAML or JSON), or the defaults alone when None."""
    if path is None:
        return SimulatedTargets()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        spec = _File.model_validate(data)
    except OSError as exc:
        raise ConfigError(f"cannot read the targets file: {exc}", str(path)) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: {first['msg']}", str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not YAML: {exc}", str(path)) from None
    targets = SimulatedTargets(spec.defaults.replicas, spec.defaults.versions)
    for key, dep in sorted(spec.deployments.items()):
        if key.count("/") != 1:
            raise ConfigError(f"deployment {key!r}: write it as namespace/name", str(path))
        hpa = dep.hpa
        targets.deployments[key] = SimDeployment(dep.replicas, hpa.min if hpa else None, hpa.max if hpa else None, dep.rollout)
    for key, entry in sorted(spec.registry.items()):
        if key.count("/") != 1 or key.split("/")[0] not in ("model", "prompt"):
            raise ConfigError(f"registry entry {key!r}: write it as model/NAME or prompt/NAME", str(path))
        versions = [str(v) for v in range(1, entry.versions + 1)]
        holder = str(entry.alias_on or entry.versions)
        targets.registry[key] = SimEntry(holder, versions, {str(b) for b in entry.bad})
    return targets

