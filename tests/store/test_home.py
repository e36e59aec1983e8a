"""Zoo home resolution: --home, then $ZOO_HOME, then upward search, then the per-user dir."""

from pathlib import Path

from zoo.store.home import resolve_home


def test_explicit_home_wins_over_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "env"))
    h = resolve_home(tmp_path / "explicit")
    assert h.root == (tmp_path / "explicit").resolve()
    assert h.how == "--home"
    assert h.registry_url == f"sqlite:///{(tmp_path / 'explicit').resolve() / 'registry.db'}"


def test_env_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "env"))
    assert resolve_home(cwd=tmp_path).root == (tmp_path / "env").resolve()


def test_upward_search_finds_nearest_registry(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_HOME", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "registry.db").write_bytes(b"")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    h = resolve_home(cwd=deep)
    assert h.root == (tmp_path / "a").resolve()
    assert "upward" in h.how


def test_per_user_data_dir_is_last_resort(tmp_path, monkeypatch):
    monkeypatch.delenv("ZOO_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    h = resolve_home(cwd=lonely)
    assert h.root == (tmp_path / "xdg" / "zoo").resolve()
    assert h.how == "per-user data directory"


def test_registry_url_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_REGISTRY_URL", "sqlite:////elsewhere/reg.db")
    assert resolve_home(tmp_path).registry_url == "sqlite:////elsewhere/reg.db"
    assert resolve_home(tmp_path, "postgresql://u@h/db").registry_url == "postgresql://u@h/db"


def test_ensure_creates_layout(tmp_path):
    h = resolve_home(tmp_path / "new").ensure()
    assert {p.name for p in Path(h.root).iterdir()} == {"store", "locks"}
