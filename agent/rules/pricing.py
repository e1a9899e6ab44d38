"""LLM prices: what a request cost when the event does not say (``cost_usd`` wins).

A price table is YAML, per model, in USD per 1,000 tokens, input and output apart:

    models:
      gpt-4o: {input_per_1k: 0.0025, output_per_1k: 0.01}
      "llama-3*": {input_per_1k: 0.0006, output_per_1k: 0.0006}   # shell-style patterns
    default: {input_per_1k: 0.001, output_per_1k: 0.002}          # optional

Exact names win over patterns; patterns are tried in file order. A model with no price
and no ``default`` has no spend (the rule skips the event, as for any missing field).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import RuleError, RuleFileErrors

from .yamlfile import load_yaml

__all__ = ["Price", "PriceTable"]


class Price(BaseModel):
    """USD per 1,000 tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    input_per_1k: float = Field(ge=0)
    output_per_1k: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000.0


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = "USD"
    models: dict[str, Price] = Field(default_factory=dict)
    default: Price | None = None


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name or pattern; ``spend`` is what a rule's ``spend_usd`` reads."""

    exact: Mapping[str, Price] = field(default_factory=dict)
    patterns: tuple[tuple[str, Price], ...] = ()
    default: Price | None = None

    @classmethod
    def load(cls, path: str | Path) -> "PriceTable":
        doc = load_yaml(path)
        try:
            spec = _File.model_validate(doc.data or {})
        except ValidationError as exc:
            raise RuleFileErrors(
                [RuleError(f"{'.'.join(map(str, e['loc']))}: {e['msg']}", doc.where(e["loc"])) for e in exc.errors()]
            ) from None
        if spec.currency != "USD":
            raise RuleError(f"currency {spec.currency!r} is not supported (prices are in USD)", doc.where(("currency",)))
        exact = {k: v for k, v in spec.models.items() if not any(c in k for c in "*?[")}
        patterns = tuple((k, v) for k, v in spec.models.items() if k not in exact)
        return cls(exact, patterns, spec.default)

    def price(self, model: str) -> Price | None:
        hit = self.exact.get(model)
        if hit is not None:
            return hit
        for pattern, price in self.patterns:
            if fnmatch.fnmatchcase(model, pattern):
                return price
        return self.default

    def spend(self, event: Any) -> float | None:
        """USD of one ``llm`` event: its ``cost_usd`` if set, else tokens times the price."""
        if event.cost_usd is not None:
            return event.cost_usd
        price = self.price(event.model)
        return None if price is None else price.cost(event.prompt_tokens, event.completion_tokens)
