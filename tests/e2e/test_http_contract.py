"""schemathesis, a property-based API fuzzer, against the real server and its declared contract.

Every operation in /openapi.json gets generated requests (schema examples, boundary "coverage"
cases, random fuzzing, and stateful sequences), valid and invalid, with the API key. The run
fails on any 5xx, on a status code or header the contract does not declare, on a body that does
not match its declared schema, on valid data rejected and on invalid data accepted. The hub is
pointed at a closed local port, so generated hf:// registrations fail at once and nothing leaves
this machine. Bounded: ``ZOO_FUZZ_EXAMPLES`` cases per operation and phase (default 30), and
``ZOO_FUZZ_SECONDS`` for the whole run (default 75).
"""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is not installed: pip install 'zoo[test]'")

from serving import KEY, Server  # noqa: E402

EXAMPLES = os.environ.get("ZOO_FUZZ_EXAMPLES", "30")
MAX_SECONDS = os.environ.get("ZOO_FUZZ_SECONDS", "75")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir):
    from zoo.registry.catalog import DEFAULT_MODEL, Registry
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(tmp_path_factory.mktemp("fuzz") / "zoo"))
    reg.register(DEFAULT_MODEL, str(tiny_model_dir))  # the name the schema's examples use, on tiny weights
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}
    s = Server(str(reg.home.root), "--api-key", KEY, "--models", DEFAULT_MODEL, "--max-input-chars", "4000", env=env)
    yield s
    s.stop()


def _fuzz(server, tmp_path, *extra: str, env: dict | None = None,
          seconds: str = MAX_SECONDS) -> tuple[str, subprocess.CompletedProcess, int, int]:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    junit = tmp_path / "junit.xml"
    config = Path(__file__).with_name("schemathesis.toml")
    r = subprocess.run([cli, "--config-file", str(config), "run", server.url + "/openapi.json", "-H", f"Authorization: Bearer {KEY}",
                        "--max-examples", EXAMPLES, "--seed", "1", "--request-timeout", "30", "--max-time", seconds,
                        "--report", "junit", "--report-junit-path", str(junit), "--no-color", *extra],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its own state stays there
                       env={**os.environ, **(env or {}), "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])})
    summary = r.stdout[r.stdout.find("=== SUMMARY"):] if "=== SUMMARY" in r.stdout else r.stdout[-4000:]
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return summary, r, int(suite.get("failures")), int(suite.get("errors"))


def test_every_operation_keeps_the_declared_contract(served, tmp_path):
    summary, r, failures, errors = _fuzz(served, tmp_path)
    print(summary)
    assert "Tested: 17" in summary, summary  # every declared operation was exercised
    assert (failures, errors) == (0, 0), r.stdout[-8000:]
    assert r.returncode == 0, summary


@pytest.fixture(scope="module")
def served_reranker(tmp_path_factory):
    from tests.conftest import build_cross_encoder
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    root = tmp_path_factory.mktemp("fuzz-rerank")
    reg = Registry(resolve_home(root / "zoo"))
    reg.register("ms-marco-minilm", str(build_cross_encoder(root / "ms", "bert")))  # the schema examples' name
    s = Server(str(reg.home.root), "--api-key", KEY, "--models", "ms-marco-minilm", "--max-input-chars", "4000",
               "--max-inputs", "64")
    yield s
    s.stop()


def test_the_rerank_operations_keep_the_declared_contract(served_reranker, tmp_path):
    """The rerank routes with a reranker served: schema-valid requests are answered 2xx (bar the refusals the
    hooks document), and everything else with a declared 4xx."""
    summary, r, failures, errors = _fuzz(served_reranker, tmp_path, "--include-path-regex", "rerank",
                                         env={"ZOO_FUZZ_RERANK": "1"}, seconds=str(min(30, int(MAX_SECONDS))))
    print(summary)
    assert "Tested: 3" in summary, summary
    assert (failures, errors) == (0, 0), r.stdout[-8000:]
    assert r.returncode == 0, summary
