"""`zoo embed-dataset` / `zoo.embed_dataset` on the local engine: real files in, real Parquet out.

Every vector is compared with in-process ``embed`` on the same texts; ids must appear exactly
once; the identity metadata, the run's registry row and each refusal are asserted by value.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import zoo
from conftest import CORPUS
from zoo.errors import InvalidInput, ZooError

# varied lengths, an empty text, duplicates, and one past the tiny model's 64-token max length
TEXTS = [CORPUS[i % len(CORPUS)] + (" more words" * (i % 5)) for i in range(90)] + \
    ["", CORPUS[0], " ".join(["long"] * 300)] * 3 + ["word"]


def _reference(home, texts, **options):
    m = zoo.load("tiny", artifact="onnx-fp32", home=str(home), cache=False)
    return m, m.embed(texts, **options)


def _read(folder: Path):
    table = pq.read_table(folder)
    return table, np.stack(table.column("embedding").to_numpy(zero_copy_only=False))


def _job(home, src, out, **kw):
    return zoo.embed_dataset(src, out, model="tiny", artifact="onnx-fp32", home=str(home), **kw)


def test_parquet_in_parquet_out_equals_embed(zoohome, tmp_path):
    from zoo.registry.catalog import open_registry
    from zoo.registry.runs import list_runs

    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": TEXTS, "lang": ["en"] * len(TEXTS)}), src)
    r = _job(zoohome, src, tmp_path / "out", shard_rows=40, batch_rows=16)
    m, ref = _reference(zoohome, TEXTS)

    table, got = _read(tmp_path / "out")
    assert table.column_names == ["id", "embedding", "truncated"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    order = np.argsort(table.column("id").to_numpy())
    assert table.column("id").to_numpy()[order].tolist() == list(range(len(TEXTS)))
    assert np.abs(got[order] - ref).max() < 1e-4
    assert np.flatnonzero(table.column("truncated").to_numpy()[order]).tolist() == list(ref.truncated)
    assert (r.rows, r.shards, r.shards_skipped, r.rejected, r.truncated) == (len(TEXTS), 3, 0, 0, 3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == \
        ["_rejects", "_zoo_job.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]

    meta = pq.read_metadata(tmp_path / "out" / "part-00001.parquet").metadata
    ident = {k.decode()[4:]: json.loads(v) for k, v in meta.items() if k.startswith(b"zoo.")}
    assert {k: ident[k] for k in ("model", "revision", "artifact", "store_digest", "runtime_precision", "prompt",
                                  "normalize", "dimensions", "zoo_version", "shard", "rows_in", "run_id")} == {
        "model": "tiny", "revision": m.info["revision"], "artifact": "onnx-fp32",
        "store_digest": m.info["store_digest"], "runtime_precision": "fp32", "prompt": "", "normalize": True,
        "dimensions": 32, "zoo_version": zoo.__version__, "shard": 1, "rows_in": 40, "run_id": r.run_id}

    (run,) = [x for x in list_runs(open_registry(str(zoohome))) if x.id == r.run_id]
    assert (run.status.value, run.rows, run.shards_total, run.shards_done, run.store_digest, run.artifact_target,
            run.input_digest, run.output_path) == ("succeeded", len(TEXTS), 3, 3, m.info["store_digest"], "onnx-fp32",
                                                   r.identity["input_digest"], str((tmp_path / "out").resolve()))
    assert run.timings["rows"] == len(TEXTS) and run.timings["peak_rss_mb_by_worker"]


def test_each_input_format_and_options(zoohome, tmp_path):
    """JSONL, CSV, a text file and a folder of Parquet parts give the same vectors; id column, prompt, dims."""
    texts = [t for t in TEXTS[:30] if "\n" not in t]
    ids = [f"doc-{i:03d}" for i in range(len(texts))]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"doc": d, "body": t}) + "\n" for d, t in zip(ids, texts)))
    pcsv.write_csv(pa.table({"doc": ids, "body": texts}), tmp_path / "in.csv")
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts))
    (tmp_path / "parts").mkdir()
    pq.write_table(pa.table({"doc": ids[:12], "body": texts[:12]}), tmp_path / "parts" / "a.parquet")
    pq.write_table(pa.table({"doc": ids[12:], "body": texts[12:]}), tmp_path / "parts" / "b.parquet")
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    _, ref = _reference(zoohome, texts, prompt_name="query", dimensions=16)

    for src in ("in.jsonl", "in.csv", "parts"):
        out = tmp_path / f"out-{src}"
        _job(zoohome, tmp_path / src, out, column="body", id_column="doc", prompt_name="query", dimensions=16,
             shard_rows=7)
        table, got = _read(out)
        by_id = dict(zip(table.column("doc").to_pylist(), got))
        assert sorted(by_id) == ids, src
        assert np.abs(np.stack([by_id[d] for d in ids]) - ref).max() < 1e-4, src
        assert json.loads(pq.read_metadata(out / "part-00000.parquet").metadata[b"zoo.prompt"]) == "query: "
    _job(zoohome, tmp_path / "in.txt", tmp_path / "out-txt", prompt_name="query", dimensions=16)
    table, got = _read(tmp_path / "out-txt")
    assert table.column("id").to_pylist() == list(range(len(texts)))
    assert np.abs(got - ref).max() < 1e-4


def test_the_vector_cache_serves_a_second_job(zoohome, tmp_path):
    src = tmp_path / "in.parquet"
    texts = [f"cache me {i}" for i in range(50)]
    pq.write_table(pa.table({"text": texts}), src)
    first = zoo.embed_dataset(src, tmp_path / "a", model="tiny", artifact="onnx-fp32", home=str(zoohome))
    second = zoo.embed_dataset(src, tmp_path / "b", model="tiny", artifact="onnx-fp32", home=str(zoohome))
    assert (first.cache_hits, second.cache_hits) == (0, 50)
    assert np.array_equal(_read(tmp_path / "a")[1], _read(tmp_path / "b")[1])


def test_bad_input_is_refused_naming_the_problem(zoohome, tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"], "n": [1, 2, 3]}), src)
    with pytest.raises(InvalidInput, match=r"no column 'body'; its columns are 'text', 'n'"):
        _job(zoohome, src, tmp_path / "o1", column="body")
    with pytest.raises(InvalidInput, match=r"column 'n' holds int64, not strings"):
        _job(zoohome, src, tmp_path / "o2", column="n")
    with pytest.raises(InvalidInput, match=r"row 1 of .*in.parquet: column 'text' is null.*--skip-invalid"):
        _job(zoohome, src, tmp_path / "o3")
    (tmp_path / "mixed.jsonl").write_text('{"k": "x1", "text": "fine"}\n{"k": "x2", "text": 7}\n')
    with pytest.raises(InvalidInput, match=r"row 'x2' of .*mixed.jsonl: column 'text' is a int, not a string"):
        _job(zoohome, tmp_path / "mixed.jsonl", tmp_path / "o4", id_column="k")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InvalidInput, match=r"broken.parquet: cannot read it as parquet"):
        _job(zoohome, tmp_path / "broken.parquet", tmp_path / "o5")
    with pytest.raises(InvalidInput, match=r"no such file or folder"):
        _job(zoohome, tmp_path / "absent.parquet", tmp_path / "o6")
    with pytest.raises(InvalidInput, match=r"need --engine ray"):
        _job(zoohome, src, tmp_path / "o7", workers=2)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 8))  # refused before anything was written


def test_skip_invalid_writes_rejects(zoohome, tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [{"text": "one"}, {"text": None}, {"text": "three"}, {"text": ["a list"]}, {"other": 1}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = _job(zoohome, src, tmp_path / "out", skip_invalid=True)
    table, got = _read(tmp_path / "out")
    rejects = pq.read_table(tmp_path / "out" / "_rejects")
    assert table.column("id").to_pylist() == [0, 2] and (r.rows, r.rejected) == (2, 3)
    assert rejects.to_pylist() == [{"id": 1, "reason": "null"}, {"id": 3, "reason": "a list, not a string"},
                                   {"id": 4, "reason": "null"}]
    assert np.abs(got - _reference(zoohome, ["one", "three"])[1]).max() < 1e-4


def test_an_output_folder_is_never_shared_by_two_jobs(zoohome, tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["x", "y"]}), src)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match=r"holds files zoo did not write \(notes.txt"):
        _job(zoohome, src, tmp_path / "foreign")
    _job(zoohome, src, tmp_path / "out")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    with pytest.raises(InvalidInput, match=r"already holds this job's files .*pass --resume"):
        _job(zoohome, src, tmp_path / "out")
    with pytest.raises(InvalidInput, match=r"holds another job's files .*differs in dimensions"):
        _job(zoohome, src, tmp_path / "out", dimensions=8, resume=True)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before
    r = _job(zoohome, src, tmp_path / "out", resume=True)
    assert (r.shards_skipped, r.rows) == (1, 2)


def _cli(home, *args, env=None):
    return subprocess.run([sys.executable, "-m", "zoo.cli", "--home", str(home), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_resume_after_a_killed_run(zoohome, tmp_path):
    """SIGKILL mid-shard (its file staged, not renamed); --resume does only the rest: no gap, no duplicate."""
    from zoo.datasets.worker import FAULT_ENV
    from zoo.registry.catalog import open_registry
    from zoo.registry.runs import list_runs

    src = tmp_path / "in.parquet"
    texts = [f"row {i} " + CORPUS[i % len(CORPUS)] for i in range(100)]
    pq.write_table(pa.table({"text": texts}), src)
    out = tmp_path / "out"
    args = ["embed-dataset", str(src), str(out), "-m", "tiny", "--artifact", "onnx-fp32", "--shard-rows", "20"]
    killed = _cli(zoohome, *args, env={FAULT_ENV: f"{tmp_path / 'fired'}:2"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    names = sorted(p.name for p in out.iterdir())
    assert [n for n in names if n.startswith("part-")] == ["part-00000.parquet", "part-00001.parquet"]
    assert [n.endswith("-part-00002.parquet") for n in names if n.startswith(".tmp-")] == [True]  # the staged shard
    (run,) = [r for r in list_runs(open_registry(str(zoohome))) if r.output_path == str(out.resolve())]
    assert (run.status.value, run.shards_done) == ("running", 2)

    again = _cli(zoohome, *args, "--resume", "--json", env={FAULT_ENV: f"{tmp_path / 'fired'}:2"})
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert (summary["shards"], summary["shards_skipped"], summary["rows"], summary["run_id"]) == (5, 2, 100, run.id)
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    table, got = _read(out)
    assert sorted(table.column("id").to_pylist()) == list(range(100))
    order = np.argsort(table.column("id").to_numpy())
    assert np.abs(got[order] - _reference(zoohome, texts)[1]).max() < 1e-4
    (run,) = [r for r in list_runs(open_registry(str(zoohome))) if r.id == run.id]
    assert (run.status.value, run.shards_done) == ("succeeded", 5)


def test_runs_lists_jobs_and_stale_outputs(tmp_path, tiny_model_dir, tiny_cls_dir):
    home = tmp_path / "zoo"
    src = tmp_path / "in.txt"
    src.write_text("alpha\nbeta\n")
    assert _cli(home, "register", "tiny", str(tiny_model_dir)).returncode == 0
    done = _cli(home, "embed-dataset", str(src), str(tmp_path / "out"), "-m", "tiny")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote 2 embeddings in 1 shard(s) to {tmp_path / 'out'} (0 already done) with tiny "
                                  "(torch-fp32, ")
    listed = json.loads(_cli(home, "runs", "--json").stdout)
    assert [(r["model"], r["artifact"], r["rows"], r["status"], r["stale"]) for r in listed] == \
        [("tiny", "torch-fp32", 2, "succeeded", None)]
    assert _cli(home, "runs", "--stale").stdout.strip() == "no stale runs"
    assert _cli(home, "register", "tiny", str(tiny_cls_dir), "--force").returncode == 0
    stale = _cli(home, "runs", "--stale")
    assert stale.returncode == 0 and "stale: new revision" in stale.stdout and listed[0]["id"][:8] in stale.stdout


def test_cli_errors_are_one_line(zoohome, tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["x"]}), src)
    r = _cli(zoohome, "embed-dataset", str(src), str(tmp_path / "o"), "-m", "tiny", "--column", "body")
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0
    assert r.stderr.startswith("error: ") and "no column 'body'" in r.stderr
    with pytest.raises(ZooError, match="unknown model"):
        zoo.embed_dataset(src, tmp_path / "o2", model="nope", home=str(zoohome))


def test_resume_with_another_shard_rows_keeps_the_original_plan(zoohome, tmp_path):
    """A killed job resumed with another --shard-rows: the job's own plan is used, so every id is
    written once (it once wrote 5,100 rows for 3,000 inputs and called it a success)."""
    from zoo.datasets.worker import FAULT_ENV

    src = tmp_path / "in.parquet"
    texts = [f"row {i} " + CORPUS[i % len(CORPUS)] for i in range(300)]
    pq.write_table(pa.table({"text": texts}), src)
    out = tmp_path / "out"
    args = ["embed-dataset", str(src), str(out), "-m", "tiny", "--artifact", "onnx-fp32"]
    killed = _cli(zoohome, *args, "--shard-rows", "40", env={FAULT_ENV: f"{tmp_path / 'fired'}:3"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    again = _cli(zoohome, *args, "--shard-rows", "70", "--resume", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming with the job's own --shard-rows 40 (not 70)" in again.stderr
    summary = json.loads(again.stdout)
    assert (summary["shards"], summary["shards_skipped"], summary["rows"]) == (8, 3, 300)
    ids = _read(out)[0].column("id").to_pylist()
    assert sorted(ids) == list(range(300))  # each once


def test_ids_are_checked_before_the_output_is_claimed(zoohome, tmp_path):
    cases = [
        ('{"k": 1, "text": "a"}\n{"k": "two", "text": "b"}\n', r"row 1's 'k' is a string where the rows before have integers"),
        ('{"k": {"x": 1}, "text": "a"}\n', r"row 0's 'k' is a JSON dict; ids must be strings or integers"),
        ('{"k": [1], "text": "a"}\n', r"row 0's 'k' is a JSON list"),
        ('{"k": 99999999999999999999, "text": "a"}\n', r"past what a 64-bit integer holds"),
        ('{"k": 1, "text": "a"}\n{"text": "b"}\n', r"row 1 has no 'k' \(missing or null\)"),
        ('{"k": 1.5, "text": "a"}\n', r"row 0's 'k' is a JSON float"),
    ]
    for n, (body, message) in enumerate(cases):
        src = tmp_path / f"in{n}.jsonl"
        src.write_text(body)
        with pytest.raises(InvalidInput, match=message):
            _job(zoohome, src, tmp_path / f"o{n}", id_column="k")
        assert not (tmp_path / f"o{n}").exists()
    pq.write_table(pa.table({"text": ["a", "b"], "k": ["x", None]}), tmp_path / "null.parquet")
    with pytest.raises(InvalidInput, match=r"row 1 has no 'k' \(null\)"):
        _job(zoohome, tmp_path / "null.parquet", tmp_path / "onull", id_column="k")
    assert not (tmp_path / "onull").exists()
    r = _cli(zoohome, "embed-dataset", str(tmp_path / "in3.jsonl"), str(tmp_path / "ocli"), "-m", "tiny", "--id-column", "k")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "64-bit" in r.stderr, r.stderr[-1500:]


def test_a_dictionary_encoded_text_column_is_read_as_text(zoohome, tmp_path):
    texts = ["red", "green", "red", "blue"]
    src = tmp_path / "cat.parquet"
    pq.write_table(pa.table({"text": pa.array(texts).dictionary_encode()}), src)  # as pandas writes categoricals
    _job(zoohome, src, tmp_path / "out")
    table, got = _read(tmp_path / "out")
    assert table.column("id").to_pylist() == [0, 1, 2, 3]
    assert np.abs(got - _reference(zoohome, texts)[1]).max() < 1e-4


def test_an_input_rewritten_during_the_job_fails_it(zoohome, tmp_path):
    """The input changes after it was digested (here: between the first shard and the second): the job
    ends failed, naming the file, not 'succeeded' under the old digest."""
    from zoo.datasets.worker import ShardEmbedder
    from zoo.registry.catalog import open_registry
    from zoo.registry.runs import list_runs

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(30)))
    run = ShardEmbedder.run

    def grow_after_first(self, shard):
        report = run(self, shard)
        if shard.index == 0:
            with open(src, "a") as f:
                f.write(json.dumps({"text": "a late row"}) + "\n")
        return report

    ShardEmbedder.run = grow_after_first
    try:
        with pytest.raises(InvalidInput, match=r"in.jsonl changed while the job ran .*Rerun the job"):
            _job(zoohome, src, tmp_path / "out", shard_rows=10)
    finally:
        ShardEmbedder.run = run
    (failed,) = [r for r in list_runs(open_registry(str(zoohome))) if r.output_path == str((tmp_path / "out").resolve())]
    assert failed.status.value == "failed" and "changed while the job ran" in failed.error


def test_a_full_disk_is_one_line_and_resume_writes_the_rest(zoohome, tmp_path, small_disk):
    """The output's disk fills mid-job: one line naming what is written and what to do (it was a
    pyarrow traceback), the run recorded failed, no staged file left; --resume after freeing space
    writes the rest, each id once."""
    from conftest import fill_disk
    from zoo.registry.catalog import open_registry
    from zoo.registry.runs import list_runs

    src = tmp_path / "in.parquet"
    texts = [f"row {i} " + CORPUS[i % len(CORPUS)] + " padding words" * 20 for i in range(1200)]
    pq.write_table(pa.table({"text": texts}), src)
    out = small_disk / "out"
    args = ["embed-dataset", str(src), str(out), "-m", "tiny", "--artifact", "onnx-fp32", "--shard-rows", "200"]
    fill_disk(small_disk, 24 * 1024)  # room for two or three of the six shards (~8 KB each)
    full = _cli(zoohome, *args)
    assert full.returncode == 1 and "Traceback" not in full.stderr, full.stderr[-2000:]
    (line,) = full.stderr.strip().splitlines()
    assert line.startswith("error: the disk is full: ") and "rerun with --resume" in line, line
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    written = len([p for p in out.iterdir() if p.name.startswith("part-")])
    assert 0 <= written < 6 and f"{written} of 6 shards are written" in line
    (run,) = [r for r in list_runs(open_registry(str(zoohome))) if r.output_path == str(out.resolve())]
    assert run.status.value == "failed" and run.error.startswith("the disk is full")

    (small_disk / "filler").unlink()
    again = _cli(zoohome, *args, "--resume", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout)
    assert (summary["shards"], summary["shards_skipped"], summary["rows"]) == (6, written, 1200)
    assert sorted(_read(out)[0].column("id").to_pylist()) == list(range(1200))


@pytest.mark.parametrize("precision, arrow_type", [
    ("int8", pa.list_(pa.int8(), 32)), ("uint8", pa.list_(pa.uint8(), 32)), ("binary", pa.list_(pa.int8(), 4)),
    ("ubinary", pa.binary(4)), ("float16", pa.list_(pa.float16(), 32))])
def test_compact_precisions_are_written_from_the_stored_ranges(zoohome, tmp_path, precision, arrow_type):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": TEXTS}), src)
    _job(zoohome, src, tmp_path / "out", shard_rows=40, batch_rows=16, precision=precision)
    m, ref = _reference(zoohome, TEXTS, precision=precision)  # in-process, the same stored ranges
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("embedding").type == arrow_type
    order = np.argsort(table.column("id").to_numpy())
    column = table.column("embedding").to_pylist()
    got = (np.frombuffer(b"".join(column), np.uint8).reshape(len(column), -1) if precision == "ubinary"
           else np.array(column, dtype=ref.dtype))
    if precision == "float16":
        np.testing.assert_allclose(got[order].astype(np.float32), ref.astype(np.float32), atol=2e-3)
    else:  # shards of 40 rows in batches of 16 give the rows a single call gives: the ranges are the artifact's
        assert np.array_equal(got[order], ref)
    meta = pq.read_metadata(next((tmp_path / "out").glob("*.parquet"))).metadata
    assert json.loads(meta[b"zoo.precision"]) == precision
    stamped = json.loads(meta[b"zoo.ranges_digest"])
    if precision in ("int8", "uint8"):
        import hashlib

        assert stamped == hashlib.sha256(m.ranges().astype("<f4").tobytes()).hexdigest()
    else:
        assert stamped is None
    # a resume with another precision is another job
    with pytest.raises(InvalidInput):
        _job(zoohome, src, tmp_path / "out", shard_rows=40, resume=True,
             precision="float32" if precision != "float32" else "int8")


def test_a_job_written_before_precisions_existed_still_resumes(zoohome, tmp_path):
    """Outputs of zoo before compact precisions lack zoo.precision and zoo.ranges_digest: they read as float32
    (``output.DEFAULTS``), so a resume keeps their shards and writes only the rest."""
    src = tmp_path / "in.parquet"
    texts = [f"row {i} " + CORPUS[i % len(CORPUS)] for i in range(60)]
    pq.write_table(pa.table({"text": texts}), src)
    out = tmp_path / "out"
    _job(zoohome, src, out, shard_rows=20)
    old_keys = (b"zoo.precision", b"zoo.ranges_digest")
    job = json.loads((out / "_zoo_job.json").read_text())
    for key in ("precision", "ranges_digest"):
        job.pop(key, None)
        job.get("identity", {}).pop(key, None)
    (out / "_zoo_job.json").write_text(json.dumps(job))
    shards = sorted(out.glob("part-*.parquet"))
    for shard in shards[:2]:  # two shards as the old zoo wrote them; the third is gone, as if killed
        table = pq.read_table(shard)
        meta = {k: v for k, v in table.schema.metadata.items() if k not in old_keys}
        pq.write_table(table.replace_schema_metadata(meta), shard)
    shards[2].unlink()
    assert '"precision"' not in (out / "_zoo_job.json").read_text()
    r = _job(zoohome, src, out, shard_rows=20, resume=True)
    assert (r.shards, r.shards_skipped, r.rows) == (3, 2, 60)
    table, got = _read(out)
    order = np.argsort(table.column("id").to_numpy())
    assert table.column("id").to_numpy()[order].tolist() == list(range(60))
    assert np.abs(got[order] - _reference(zoohome, texts)[1]).max() < 1e-4
