"""Damaged databases, as a user meets them: one clear line and a way out, never a traceback."""

import os
import subprocess
import sys

import pytest

ZOO = [sys.executable, "-m", "zoo.cli"]


def run(home, *args):
    env = {**os.environ, "ZOO_HOME": str(home)}
    return subprocess.run([*ZOO, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def home(tmp_path, tiny_model_dir):
    from zoo.registry.catalog import Registry
    from zoo.store.home import resolve_home

    home = tmp_path / "zh"
    Registry(resolve_home(home)).register("tiny", str(tiny_model_dir))
    return home


def one_line(r) -> str:
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_garbage_inside_the_registry_is_one_line(home):
    db = home / "registry.db"
    with open(db, "r+b") as f:
        f.seek(db.stat().st_size // 2)
        f.write(b"\xde\xad" * 2048)
    for args in (["list"], ["show", "tiny"]):
        line = one_line(run(home, *args))
        assert "is damaged" in line and "restore it from a backup" in line


def test_a_truncated_registry_beside_artifacts_is_reported_not_emptied(home):
    (home / "registry.db").write_bytes(b"")
    line = one_line(run(home, "list"))
    assert "is empty (0 bytes), but the home's store holds artifacts" in line
    assert (home / "registry.db").stat().st_size == 0  # nothing was created over it


def test_cache_clear_replaces_the_damaged_cache_it_points_to(home):
    assert run(home, "embed", "-m", "tiny", "hello").returncode == 0
    (home / "cache.db").write_bytes(b"not a database at all" * 100)
    line = one_line(run(home, "embed", "-m", "tiny", "hello"))
    assert "run `zoo cache clear`" in line
    assert "without --model" in one_line(run(home, "cache", "clear", "--model", "tiny"))
    r = run(home, "cache", "clear")
    assert r.returncode == 0 and "the cache file was damaged" in r.stdout, r.stderr
    assert run(home, "embed", "-m", "tiny", "hello").returncode == 0
    assert "entries 1" in run(home, "cache", "stats").stdout
