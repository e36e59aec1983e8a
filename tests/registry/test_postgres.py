"""The registry on a real PostgreSQL server: the schema and migrations must be portable.

Starts a throwaway cluster (initdb + pg_ctl) on 127.0.0.1 for this test module.
Skips with the reason when the PostgreSQL server or the psycopg driver is missing.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
from sqlalchemy import text

from conftest import table_counts
from zoo.errors import ModelExists
from zoo.store.home import resolve_home
from zoo.registry.catalog import SCHEMA_HEAD, Registry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or ([shutil.which("initdb")] if shutil.which("initdb") else [])
    if not bins:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")
    bindir = os.path.dirname(bins[-1])
    as_user = []
    root = tempfile.mkdtemp(prefix="zoo-pg-")
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres", "postgres")
    data, port = os.path.join(root, "data"), _free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "zoo", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(root, "log"), "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://zoo@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_registry_on_postgres(postgres_url, tmp_path, tiny_model_dir, tiny_cls_dir):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from zoo.registry.schema import Base

    reg = Registry(resolve_home(tmp_path / "zh", postgres_url))
    assert reg.engine.dialect.name == "postgresql"
    with reg.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_HEAD
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        fks = conn.execute(text("SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY conname")).scalars()
        assert "fk_models_current_revision_id_revisions" in list(fks)

    first = reg.register("tiny", str(tiny_model_dir))
    reg.add_alias("stable", "tiny")
    with pytest.raises(ModelExists):
        reg.register("tiny", str(tiny_cls_dir))
    reg.register("tiny", str(tiny_cls_dir), force=True)
    assert reg.resolve("stable").revision.id == first.revision.id
    assert reg.resolve("tiny").model.pooling == "cls"
    assert table_counts(reg) == {"models": 1, "revisions": 2, "artifacts": 2, "benchmarks": 0, "aliases": 1, "jobs": 0, "runs": 0}
    d = reg.describe("tiny")
    assert [r["artifacts"][0]["status"] for r in d["revisions"]] == ["ready", "ready"]

    # a second process-like opener sees the same registry and does not re-migrate
    again = Registry(resolve_home(tmp_path / "zh", postgres_url))
    assert again.resolve("tiny").revision.resolved_id == d["current_revision"]
    assert reg.remove("tiny") == "model"
    assert table_counts(reg) == {"models": 0, "revisions": 0, "artifacts": 0, "benchmarks": 0, "aliases": 0, "jobs": 0, "runs": 0}
