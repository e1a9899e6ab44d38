"""The README's newcomer walkthroughs run as written: a doc example that rots misleads more than none."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import yaml

from agent.rules import load_rules
from agent.ruletest import run_test_file

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else len(text)]


def _yaml_blocks(section: str) -> list[str]:
    return [textwrap.dedent(block) for block in re.findall(r"```yaml\n(.*?)```", section, re.S)]


def test_the_rule_walkthrough_checks_and_its_test_passes(tmp_path):
    rule, test = _yaml_blocks(_section("### Writing and testing a rule, step by step"))
    (tmp_path / "rules" / "tests").mkdir(parents=True)
    (tmp_path / "rules" / "assistant.yaml").write_text(rule)
    (tmp_path / "rules" / "tests" / "assistant.test.yaml").write_text(test)
    assert [r.name for r in load_rules([tmp_path / "rules" / "assistant.yaml"]).rules] == ["AssistantSlowCompletions"]
    result = run_test_file(tmp_path / "rules" / "tests" / "assistant.test.yaml")
    assert result.ok, "\n".join(result.failures)
    assert result.cases == 2


def test_the_action_walkthrough_is_a_valid_scale_action():
    from actions.registry import ACTIONS

    (block,) = _yaml_blocks(_section("## Turning on an action safely"))
    (entry,) = yaml.safe_load(block)["actions"]
    params = ACTIONS[entry["type"]].Params.model_validate(entry)
    assert params.mode is None  # no mode: dry-run, the default the walkthrough starts from
    assert (params.max_replicas, params.max_step, params.cooldown) == (12, 2, 900.0)
