"""YAML deployments: `zoo apply` registers, aliases, prompts and converts; a bad file changes nothing."""

import pytest
from click.testing import CliRunner

from conftest import table_counts
from zoo.cli import cli

pytest.importorskip("yaml", reason="the serve extra is not installed")


def write(tmp_path, text: str):
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    return str(path)


def run(registry, *args):
    return CliRunner().invoke(cli, ["--home", str(registry.home.root), *args])


def test_apply_registers_aliases_prompts_and_converts_idempotently(tmp_path, registry, tiny_model_dir):
    config = write(tmp_path, f"""
models:
  - name: tiny
    source: {tiny_model_dir}
    aliases: [embedder]
    targets: [onnx-fp32]
    prompts: {{query: "search: "}}
serve:
  port: 8123
  max_inputs: 16
""")
    out = run(registry, "apply", config)
    assert out.exit_code == 0, out.output
    assert "registered tiny" in out.output and "alias embedder -> tiny" in out.output
    assert "tiny onnx-fp32: ready" in out.output
    resolved = registry.resolve("embedder")
    assert resolved.model.name == "tiny" and resolved.model.query_prompt == "search: "
    assert resolved.model.document_prompt == "passage: "  # from the model's own config, untouched
    assert {a.target: a.status.value for a in resolved.revision.artifacts}["onnx-fp32"] == "ready"
    before = table_counts(registry)
    again = run(registry, "apply", config)
    assert again.exit_code == 0 and "nothing to change" in again.output
    assert table_counts(registry) == before


@pytest.mark.parametrize("text, message", [
    ("models:\n  - name: a\n    source: [unclosed\n", "zoo.yaml:4: invalid YAML"),
    ("models:\n  - name: a\n    source: /tmp\n    colour: red\n", "zoo.yaml:4: unknown key 'colour' in a model"),
    ("models:\n  - name: a\n", "zoo.yaml:2: model is missing 'source'"),
    ("models:\n  - name: a\n    source: /tmp\n    targets: [onnx-fp64]\n", "zoo.yaml:4: unknown target(s) onnx-fp64"),
    ("models:\n  - name: a\n    source: ftp://x/y\n", "zoo.yaml:2:"),
    ("models:\n  - name: a\n    source: /tmp\nserve:\n  port: eighty\n", "zoo.yaml:5: serve.port must be int"),
    ("servers: []\n", "zoo.yaml:1: unknown key 'servers' in the top level"),
    ("models:\n  - {name: a, source: /tmp}\n  - {name: a, source: /tmp}\n", "name(s) used twice: a"),
])
def test_a_bad_file_names_the_line_and_changes_nothing(tmp_path, registry, text, message):
    before = table_counts(registry)
    out = run(registry, "apply", write(tmp_path, text))
    assert out.exit_code == 1 and message in out.output, out.output
    assert table_counts(registry) == before
