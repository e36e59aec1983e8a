"""A full disk under the home: `zoo convert` fails in one line and records the failure, never a traceback
or a row left `building`. A real full file system: a small tmpfs mounted for the test (needs root, as CI
and the dev machines run; skipped, saying so, where mounting is not allowed)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import fill_disk
from zoo.registry.catalog import Registry
from zoo.store.home import resolve_home


def test_convert_on_a_full_disk_is_one_line_and_the_row_is_failed(small_disk, tiny_model_dir):
    reg = Registry(resolve_home(small_disk / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    fill_disk(small_disk, 64 * 1024)  # the ONNX graph alone is larger than what is left
    r = subprocess.run([sys.executable, "-m", "zoo", "--home", str(small_disk / "zoo"), "convert", "tiny", "--to",
                        "onnx-fp32"], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TMPDIR": str(small_disk)})
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr and "sqlalchemy" not in r.stderr.lower(), r.stderr[-2000:]
    assert "disk is full" in r.stdout + r.stderr, r.stdout + r.stderr
    (small_disk / "filler").unlink()
    (art,) = [a for a in reg.resolve("tiny").revision.artifacts if a.target == "onnx-fp32"]
    assert art.status.value == "failed" and "disk is full" in art.error and str(small_disk) not in art.error
    assert not any((small_disk / "zoo" / "store" / "tmp").iterdir())  # staging went with the failure


def test_a_registry_on_a_full_disk_is_one_line(small_disk, tiny_model_dir):
    reg = Registry(resolve_home(small_disk / "zoo"))
    reg.register("tiny", str(tiny_model_dir))
    fill_disk(small_disk, 0)
    r = subprocess.run([sys.executable, "-m", "zoo", "--home", str(small_disk / "zoo"), "convert", "tiny", "--to",
                        "onnx-fp32"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.splitlines()[-1].startswith("error: registry ") and "the disk is full" in r.stderr, r.stderr
