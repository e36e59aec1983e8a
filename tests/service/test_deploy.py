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
    ("models:\n  - name: a\n    source: /tmp\n    token_encoding: gpt2\n",
     "zoo.yaml:4: token_encoding is 'gpt2'; it must be one of cl100k_base, o200k_base, model"),
    ("models:\n  - name: a\n    source: /tmp\nserve:\n  port: eighty\n", "zoo.yaml:5: serve.port must be int"),
    ("servers: []\n", "zoo.yaml:1: unknown key 'servers' in the top level"),
    ("models:\n  - {name: a, source: /tmp}\n  - {name: a, source: /tmp}\n", "name(s) used twice: a"),
])
def test_a_bad_file_names_the_line_and_changes_nothing(tmp_path, registry, text, message):
    before = table_counts(registry)
    out = run(registry, "apply", write(tmp_path, text))
    assert out.exit_code == 1 and message in out.output, out.output
    assert table_counts(registry) == before


SERVE_HEAD = "models:\n  - name: a\n    source: /tmp\nserve:\n"


@pytest.mark.parametrize("line, message", [
    ("max_batch_rows: 0", "serve.max_batch_rows is 0; it must be at least 1"),  # once hung the first request
    ("max_body_bytes: 0", "serve.max_body_bytes is 0; it must be at least 1"),
    ("max_inputs: -5", "serve.max_inputs is -5; it must be from 1 to 2048"),
    ("max_inputs: 100000", "serve.max_inputs is 100000; it must be from 1 to 2048"),
    ("max_queue_texts: 0", "serve.max_queue_texts is 0; it must be at least 1"),
    ("max_input_chars: 0", "serve.max_input_chars is 0; it must be at least 1"),
    ("max_wait_ms: .nan", "serve.max_wait_ms must be a number"),
    ("port: 99999", "serve.port is 99999; it must be from 0 to 65535"),
    ("token_encoding: r50k_base", "serve.token_encoding is 'r50k_base'; it must be one of cl100k_base, o200k_base"),
    ("allow_source_dirs: [/nonexistent/zoo]", "serve.allow_source_dirs: /nonexistent/zoo is not a directory"),
    ("host: !!python/object/apply:os.system [echo owned]", "zoo.yaml:5: serve.host: could not determine a constructor"),
])
def test_serve_values_in_yaml_get_the_command_lines_checks(tmp_path, registry, line, message):
    """A value `zoo serve --option` refuses is refused from YAML too, with its line, before anything changes."""
    before = table_counts(registry)
    out = run(registry, "serve", "--config", write(tmp_path, SERVE_HEAD + "  " + line + "\n"))
    assert out.exit_code == 1 and message in out.output and out.output.count("\n") == 1, out.output
    assert f"zoo.yaml:5: serve." in out.output or "zoo.yaml:5:" in out.output
    assert table_counts(registry) == before


def test_deep_nesting_is_one_line(tmp_path, registry):
    out = run(registry, "apply", write(tmp_path, "models: " + "[" * 20_000 + "]" * 20_000 + "\n"))
    assert out.exit_code == 1 and out.output.count("\n") == 1, out.output[-500:]
    assert "nested too deeply" in out.output or "invalid YAML" in out.output


def test_python_settings_and_the_command_line_refuse_the_same_values(registry):
    from zoo.errors import InvalidInput
    from zoo.service.settings import ServeSettings

    with pytest.raises(InvalidInput, match="max_batch_rows is 0; it must be at least 1"):
        ServeSettings(max_batch_rows=0)
    out = run(registry, "serve", "--max-batch-rows", "0")
    assert out.exit_code == 2 and "0 is not in the range x>=1" in out.output
    out = run(registry, "serve", "--allow-source-dir", "/nonexistent/zoo")
    assert out.exit_code == 2 and "does not exist" in out.output


@pytest.mark.parametrize("host", ["256.1.1.1", "no-such-host.invalid"])
def test_a_host_that_cannot_be_bound_is_one_line(registry, host):
    out = run(registry, "serve", "--host", host, "--port", "0")
    assert out.exit_code == 1 and out.output.count("\n") == 1, out.output
    assert out.output.startswith(f"error: --host {host}: not an IP address or a name this machine can resolve")
