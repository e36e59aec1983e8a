"""A model that ships its own code (config.json auto_map): refused by default, trusted by opt-in with each code
file's sha256 recorded, refused again when that code changes. Loaded without its code, such a model embeds as its
base class: the vectors below prove the fixture's plain-BERT reading is a different function (so these tests fail
if zoo ever serves that reading)."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
from conftest import build_remote_code_model, row_cosines
from zoo.errors import CodeChanged, InvalidInput, StoreCorruption, UntrustedCode

TEXTS = ["the quick brown fox", "a cat sat on the mat while it rained outside", "", "le chat dort"]


@pytest.fixture(scope="module")
def code_dir(tmp_path_factory):
    return build_remote_code_model(tmp_path_factory.mktemp("models") / "tiny-code")


@pytest.fixture(scope="module")
def references(code_dir):
    """(the model's real output, the base class's reading of the same folder)"""
    from sentence_transformers import SentenceTransformer

    real = SentenceTransformer(str(code_dir), device="cpu", trust_remote_code=True).encode(TEXTS)
    base = SentenceTransformer(str(code_dir), device="cpu").encode(TEXTS)
    assert row_cosines(real, base).max() < 0.9  # the premise: the base reading is wrong for every text
    return real, base


def _rows(reg):
    from sqlalchemy import func, select

    from zoo.registry.schema import Artifact, Model, Revision

    with reg.session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Model, Revision, Artifact))


def test_refused_by_default_naming_the_files_and_the_flag(registry, code_dir):
    with pytest.raises(UntrustedCode) as err:
        registry.register("code", str(code_dir))
    message = str(err.value)
    assert "config.json auto_map AutoModel -> modeling_custom.CustomBertModel" in message
    assert "modeling_custom.py" in message and "--trust-remote-code" in message
    assert _rows(registry) == (0, 0, 0)
    assert not any(registry.home.root.glob("store/**/modeling_custom.py"))  # nothing stored either


def test_trusted_code_is_pinned_served_and_refused_when_it_changes(registry, code_dir, references):
    real, base = references
    registry.register("code", str(code_dir), trust_remote_code=True)
    digest = hashlib.sha256((code_dir / "modeling_custom.py").read_bytes()).hexdigest()
    assert registry.describe("code")["trusted_code"] == {"modeling_custom.py": digest}

    got = zoo.load("code", registry=registry, cache=False).embed(TEXTS)
    assert row_cosines(got, real).min() >= 0.9999
    assert row_cosines(got, base).max() < 0.9

    # the exporters cannot trace the model's code: refused by name, the torch targets named instead
    from zoo.conversion.pipeline import convert

    with pytest.raises(InvalidInput, match=r"cannot build onnx-fp32 for code: the model runs its own code "
                                           r"\(modeling_custom\.py\).*torch-fp32"):
        convert(registry, "code", ["onnx-fp32"])
    assert [a["target"] for a in registry.describe("code")["revisions"][0]["artifacts"]] == ["torch-fp32"]

    # a code file planted beside the stored tree (outside the store's manifest): refused before any import
    art = registry.resolve("code", auto_default=False).revision.artifacts[0]
    tree = registry.store.tree(art.store_digest)
    os.chmod(tree, 0o755)
    (tree / "helpers.py").write_text("import os  # code nobody trusted\n")
    with pytest.raises(CodeChanged, match=r"\(helpers\.py differ from the sha256 recorded at registration\)"):
        zoo.load("code", registry=registry, cache=False).embed(TEXTS)
    # a trusted file edited in place: the store's own digests refuse it first
    (tree / "helpers.py").unlink()
    stored = tree / "modeling_custom.py"
    os.chmod(stored, 0o644)
    stored.write_text(stored.read_text() + "\nimport os  # a change nobody read\n")
    with pytest.raises(StoreCorruption, match=r"modeling_custom\.py does not match its recorded sha256"):
        zoo.load("code", registry=registry, cache=False).embed(TEXTS)


def test_cli_flag_and_show(tmp_path, code_dir, references):
    env = {**os.environ, "ZOO_HOME": str(tmp_path / "zh")}
    zoo_cli = [sys.executable, "-m", "zoo"]
    refused = subprocess.run([*zoo_cli, "register", "code", str(code_dir)], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "--trust-remote-code" in refused.stderr and "Traceback" not in refused.stderr
    ok = subprocess.run([*zoo_cli, "register", "code", str(code_dir), "--trust-remote-code", "--json"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    digest = hashlib.sha256((code_dir / "modeling_custom.py").read_bytes()).hexdigest()
    assert json.loads(ok.stdout)["trusted_code"] == {"modeling_custom.py": digest}
    show = subprocess.run([*zoo_cli, "show", "code"], capture_output=True, text=True, env=env)
    assert f"modeling_custom.py  sha256:{digest}" in show.stdout, show.stdout
    out = subprocess.run([*zoo_cli, "embed", "--model", "code", "--json", *TEXTS[:2]], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    got = np.array(json.loads(out.stdout)["embeddings"], dtype=np.float32)
    assert row_cosines(got, references[0][:2]).min() >= 0.9999


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_what_counts_as_code(tmp_path, tiny_model_dir):
    import shutil

    from zoo.engine.model_code import find_model_code

    assert find_model_code(tiny_model_dir) is None  # sentence-transformers' own modules only
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "custom_pooling.MyPooling"
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "custom_pooling.py").write_text("class MyPooling: pass\n")
    code = find_model_code(folder)
    assert code.references == (f"modules.json module {modules[1]['name']} -> custom_pooling.MyPooling",)
    assert [p for p, _ in code.files] == ["custom_pooling.py"] and code.external == ()
    _edit_json(folder / "tokenizer_config.json", auto_map={"AutoTokenizer": ["tok.SlowTok", "tok.FastTok"]})
    assert find_model_code(folder).references[:2] == ("tokenizer_config.json auto_map AutoTokenizer -> tok.SlowTok",
                                                      "tokenizer_config.json auto_map AutoTokenizer -> tok.FastTok")


def test_code_in_another_repository_is_refused_even_when_trusted(registry, tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "nomic-like"
    shutil.copytree(tiny_model_dir, folder)
    _edit_json(folder / "config.json",
               auto_map={"AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel"})
    with pytest.raises(UntrustedCode, match=r"another repository \(nomic-ai/nomic-bert-2048\)"):
        registry.register("nomic", str(folder), trust_remote_code=True)
    assert _rows(registry) == (0, 0, 0)


def test_yaml_key(tmp_path, code_dir):
    from zoo.service.deploy import apply_deployment, load_deployment
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    spec = tmp_path / "zoo.yaml"
    spec.write_text(f"models:\n  - name: code\n    source: {code_dir}\n    trust_remote_code: true\n")
    reg = Registry(resolve_home(tmp_path / "zoo"))
    apply_deployment(reg, load_deployment(spec))
    assert set(reg.describe("code")["trusted_code"]) == {"modeling_custom.py"}
    spec.write_text(f"models:\n  - name: code2\n    source: {code_dir}\n    trust_remote_code: yes please\n")
    with pytest.raises(Exception, match="trust_remote_code must be bool"):
        load_deployment(spec)


def test_http_register_opts_in_behind_the_key(tmp_path, code_dir, references):
    httpx = pytest.importorskip("httpx")
    from serving import AUTH, KEY, Server, wait_for

    s = Server(str(tmp_path / "zoo"), "--api-key", KEY, "--allow-source-dir", str(code_dir.parent))
    try:
        body = {"name": "code", "source": str(code_dir)}
        job = wait_for(s, httpx.post(s.url + "/v1/zoo/models", headers=AUTH, json=body).json())
        assert job["status"] == "failed" and "trust_remote_code: true" in job["error"], job
        assert httpx.post(s.url + "/v1/zoo/models", json={**body, "trust_remote_code": True}).status_code == 401
        job = wait_for(s, httpx.post(s.url + "/v1/zoo/models", headers=AUTH,
                                     json={**body, "trust_remote_code": True}).json())
        assert job["status"] == "succeeded", job
        r = httpx.post(s.url + "/v1/embeddings", headers=AUTH, json={"model": "code", "input": TEXTS[:2]}, timeout=120)
        got = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
        assert row_cosines(got, references[0][:2]).min() >= 0.9999
    finally:
        s.stop()
