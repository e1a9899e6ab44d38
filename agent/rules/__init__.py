"""Rule files: strict loading with positions, selectors, templates, compiled rules."""

from .loader import load_rule_file, load_rules
from .rule import Rule, RuleSet

__all__ = ["Rule", "RuleSet", "load_rule_file", "load_rules"]
