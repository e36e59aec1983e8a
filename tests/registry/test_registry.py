"""Registry: exact rows after registration, pinning, --force, aliases, rm, failures leave no trace."""

import json
import shutil

import pytest
from sqlalchemy import select

from conftest import table_counts
from zoo.errors import InvalidInput, ModelExists, ModelNotFound, NotAModel
from zoo.registry.catalog import SCHEMA_HEAD, Registry
from zoo.registry.schema import Alias, Artifact, Model, Revision


def rows(registry, cls):
    with registry.session() as s:
        return list(s.scalars(select(cls).order_by(cls.id)))


def test_schema_head_constant_matches_migrations():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import zoo.registry.catalog

    cfg = Config()
    cfg.set_main_option("script_location", str(zoo.registry.catalog.Path(zoo.registry.catalog.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_migrations_applied_on_open_and_schema_matches_models(registry):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from zoo.registry.schema import Base

    with registry.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == SCHEMA_HEAD
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_register_local_records_exact_rows(registry, tiny_model_dir):
    r = registry.register("tiny", str(tiny_model_dir))
    (model,) = rows(registry, Model)
    assert (model.name, model.source, model.task, model.dim, model.max_seq_length, model.pooling,
            model.normalize, model.query_prompt, model.document_prompt, model.license) == (
        "tiny", str(tiny_model_dir.resolve()), "sentence-embedding", 32, 64, "mean", True,
        "query: ", "passage: ", "mit")
    (rev,) = rows(registry, Revision)
    assert model.current_revision_id == rev.id
    assert rev.requested_ref is None
    paths = sorted(p.relative_to(tiny_model_dir).as_posix() for p in tiny_model_dir.rglob("*") if p.is_file())
    assert [f["path"] for f in rev.manifest] == paths
    (art,) = rows(registry, Artifact)
    assert (art.target, art.format, art.precision, art.status.value) == ("torch-fp32", "torch", "fp32", "ready")
    # a local source is pinned by the digest of its content, which is the stored artifact
    assert rev.resolved_id == f"sha256:{art.store_digest}"
    assert art.size_bytes == sum(f["size"] for f in rev.manifest)
    assert art.provenance["converter"] == "checkpoint" and "sentence-transformers" in art.provenance["libraries"]
    tree = registry.artifact_path(art)
    for p in paths:
        assert (tree / p).read_bytes() == (tiny_model_dir / p).read_bytes()
    assert r.model.name == "tiny" and r.revision.id == rev.id


def test_reregister_without_force_is_refused_and_changes_nothing(registry, tiny_model_dir, tiny_cls_dir):
    registry.register("tiny", str(tiny_model_dir))
    before = table_counts(registry)
    with pytest.raises(ModelExists, match="--force"):
        registry.register("tiny", str(tiny_cls_dir))
    assert table_counts(registry) == before
    assert rows(registry, Model)[0].pooling == "mean"


def test_force_replaces_source_and_keeps_history(registry, tiny_model_dir, tiny_cls_dir):
    first = registry.register("tiny", str(tiny_model_dir))
    second = registry.register("tiny", str(tiny_cls_dir), force=True)
    (model,) = rows(registry, Model)
    assert (model.pooling, model.normalize, model.source) == ("cls", False, str(tiny_cls_dir.resolve()))
    assert model.current_revision_id == second.revision.id != first.revision.id
    assert len(rows(registry, Revision)) == 2 and len(rows(registry, Artifact)) == 2
    # same content again: the same revision, no new rows
    registry.register("tiny", str(tiny_cls_dir), force=True)
    assert len(rows(registry, Revision)) == 2 and len(rows(registry, Artifact)) == 2


def test_content_change_gives_new_pinned_revision(registry, tiny_model_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    a = registry.register("m", str(d))
    cfg = json.loads((d / "config_sentence_transformers.json").read_text())
    cfg["prompts"] = {"query": "Q: "}
    (d / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    b = registry.register("m", str(d), force=True)
    assert a.revision.resolved_id != b.revision.resolved_id
    assert b.model.query_prompt == "Q: " and b.model.document_prompt is None


@pytest.mark.parametrize("source, error", [
    ("/no/such/dir", "not an existing directory"),
    ("hf://", "malformed hub source"),
])
def test_bad_source_leaves_registry_unchanged(registry, tiny_model_dir, source, error):
    registry.register("tiny", str(tiny_model_dir))
    before = table_counts(registry)
    with pytest.raises(Exception, match=error):
        registry.register("other", source)
    assert table_counts(registry) == before


def test_not_a_model_leaves_registry_and_store_referencing_nothing_new(registry, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(NotAModel, match="no config.json"):
        registry.register("junk", str(junk))
    assert set(table_counts(registry).values()) == {0}
    assert list(registry.store.tmp.iterdir()) == []


def test_revision_only_for_hub(registry, tiny_model_dir):
    with pytest.raises(InvalidInput, match="hf:// sources only"):
        registry.register("tiny", str(tiny_model_dir), revision="main")


@pytest.mark.parametrize("name", ["", "a/b", "-lead", "sp ace", "x" * 201])
def test_invalid_names(registry, tiny_model_dir, name):
    with pytest.raises(InvalidInput, match="invalid model name"):
        registry.register(name, str(tiny_model_dir))


def test_unknown_model_lists_known(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    with pytest.raises(ModelNotFound, match=r"unknown model 'nope'; registered: tiny\."):
        registry.resolve("nope")


def test_alias_points_at_revision_and_survives_force(registry, tiny_model_dir, tiny_cls_dir):
    first = registry.register("tiny", str(tiny_model_dir))
    registry.add_alias("stable", "tiny")
    registry.register("tiny", str(tiny_cls_dir), force=True)
    via = registry.resolve("stable")
    assert via.via_alias == "stable" and via.revision.id == first.revision.id
    assert registry.resolve("tiny").revision.id != first.revision.id
    with pytest.raises(ModelExists, match="already a model name"):
        registry.add_alias("tiny", "stable")
    with pytest.raises(ModelExists, match="is an alias"):
        registry.register("stable", str(tiny_model_dir))


def test_remove_model_and_alias_then_gc_frees_files(registry, tiny_model_dir):
    registry.register("tiny", str(tiny_model_dir))
    registry.add_alias("t", "tiny")
    assert registry.remove("t") == "alias"
    assert rows(registry, Alias) == []
    size = rows(registry, Artifact)[0].size_bytes
    assert registry.remove("tiny") == "model"
    assert set(table_counts(registry).values()) == {0}
    report = registry.gc()
    # the README and config files are small; the blob bytes freed equal the artifact minus
    # deduplicated identical files
    assert 0 < report.bytes_freed <= size
    assert list(registry.store.blobs.iterdir()) == []
    with pytest.raises(ModelNotFound):
        registry.remove("tiny")


def test_verify_finds_corrupted_artifact(registry, tiny_model_dir):
    import os

    registry.register("tiny", str(tiny_model_dir))
    arts, problems = registry.verify()
    assert len(arts) == 1 and problems == []
    entry = next(e for e in rows(registry, Revision)[0].manifest if e["path"] == "model.safetensors")
    blob = registry.store.blob_path(entry["sha256"])
    os.chmod(blob, 0o644)
    blob.write_bytes(b"garbage")
    _, problems = registry.verify("tiny")
    assert [(p.path, p.issue.split(" (")[0]) for p in problems] == [("model.safetensors", "size mismatch")]


def test_two_registries_share_one_sqlite_file(home, tiny_model_dir):
    a, b = Registry(home), Registry(home)
    a.register("tiny", str(tiny_model_dir))
    assert b.resolve("tiny").model.dim == 32


CONCURRENT = """
import sys
from zoo.store.home import resolve_home
from zoo.registry import Registry
r = Registry(resolve_home(sys.argv[1]))
r.register("tiny", sys.argv[2], if_missing=True)
print(r.resolve("tiny").revision.resolved_id)
"""


def test_concurrent_first_registration_creates_one_model(tmp_path, tiny_model_dir):
    import subprocess
    import sys

    home = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(home), str(tiny_model_dir)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-500:] for o in outs]
    assert len({o[0].strip() for o in outs}) == 1
    from zoo.store.home import resolve_home

    reg = Registry(resolve_home(home))
    assert table_counts(reg) == {"models": 1, "revisions": 1, "artifacts": 1, "benchmarks": 0, "aliases": 0, "jobs": 0, "runs": 0}


def test_a_checkpoint_missing_the_models_weights_is_refused(registry, tiny_model_dir, tmp_path):
    """A valid safetensors file that holds none of the model's tensors once registered and served random
    weights; transformers' own loading report now refuses it, naming what is missing."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from zoo.errors import NotAModel

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    save_file({"unrelated.weight": torch.zeros(3)}, str(broken / "model.safetensors"))
    with pytest.raises(NotAModel, match=r"its weights lack \d+ tensor\(s\) the model uses \(embeddings\."):
        registry.register("broken", str(broken))
    assert table_counts(registry)["models"] == 0
    # a checkpoint without BERT's pooler head (as e5 and bge ship) is complete for embedding
    from safetensors.torch import load_file

    weights = {k: v for k, v in load_file(str(tiny_model_dir / "model.safetensors")).items() if "pooler" not in k}
    save_file(weights, str(broken / "model.safetensors"))
    registry.register("no-pooler", str(broken))
