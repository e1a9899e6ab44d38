"""The RAG chaos scenarios with a real MLflow registry: the index and prompt rollbacks are enforced, once each."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from actions.base import VERIFY_OUTCOMES
from agent.runtime.embedded_broker import EmbeddedBroker
from agent.simulate import RunSettings, run_simulations

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_rag_rollback_scenarios_move_the_real_aliases(broker: EmbeddedBroker, mlflow_server: Any, tmp_path: Path) -> None:
    """``bad_index``: the live alias of support-docs goes from build 2 to 1; ``unsafe_prompt``: champion 13 -> 12."""
    files = [REPO / "simulations" / f for f in ("bad_index.yaml", "unsafe_prompt.yaml")]
    out = tmp_path / "reports"
    printed = io.StringIO()
    settings = RunSettings(out=out, bootstrap=broker.bootstrap, mlflow_uri=mlflow_server.url)

    status = run_simulations(files, settings, out=printed, progress=False)

    assert status == 0, printed.getvalue()
    for name in ("bad-index", "unsafe-prompt"):
        records = [a for a in json.loads((out / name / "results.json").read_text())["actions"] if a["action"] != "notify"]
        # decisions apart from their verifications (verify after act: one verdict per executed rollback)
        actions = [a for a in records if a["outcome"] not in VERIFY_OUTCOMES]
        verdicts = [a for a in records if a["outcome"] in VERIFY_OUTCOMES]
        assert [(a["action"], a["outcome"], a["mode"]) for a in actions] == [("rollback", "executed", "enforce")], name
        assert len(verdicts) == 1, (name, verdicts)

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    index = client.get_registered_model("support-docs")
    assert index.aliases == {"live": "1"} and index.tags["watchkeeper.kind"] == "index"
    assert client.get_prompt_version_by_alias("support-bot-system", "champion").version == 12
    assert client.get_model_version("support-docs", "2").tags.get("watchkeeper.bad")
