"""zoo ships ``py.typed``: a type checker sees the public API's real signatures through ``zoo.load``
and ``zoo.embed_dataset`` (lazy at run time), so mypy checks the callers' code."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CALLER = '''
import numpy as np
import zoo

m = zoo.load("all-minilm-l6-v2", objective="latency")
v = m.embed(["a", "b"], precision="int8", dimensions=256)
r: np.ndarray = m.ranges()
reveal_type(m)
reveal_type(v)
reveal_type(zoo.embed_dataset("in.parquet", "out/").rows)
wrong: int = m.embed(["a"])
m.embed(["a"], dimension=3)
zoo.load(objective=3)
'''


def test_mypy_checks_callers_against_the_public_api(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
    (tmp_path / "caller.py").write_text(CALLER)
    # the package from this checkout (an editable install's import hook is invisible to mypy)
    r = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental",
                        "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", "caller.py"],
                       cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(ROOT)},
                       timeout=300)
    lines = [line.split(":", 2)[1:] for line in r.stdout.splitlines() if line.startswith("caller.py:")]
    found = {(int(n), text.strip()) for n, text in lines}
    assert (8, 'note: Revealed type is "zoo.engine.model.EmbeddingModel"') in found, r.stdout
    assert (9, 'note: Revealed type is "zoo.engine.model.Embeddings"') in found, r.stdout
    assert (10, 'note: Revealed type is "int"') in found, r.stdout
    errors = {n: text for n, text in found if text.startswith("error:")}
    assert sorted(errors) == [11, 12, 13], r.stdout  # each misuse is caught, nothing else
    assert "Incompatible types in assignment" in errors[11]
    assert 'Unexpected keyword argument "dimension"' in errors[12]
    assert 'Argument "objective"' in errors[13]
