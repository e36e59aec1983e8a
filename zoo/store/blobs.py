"""Content-addressed artifact store, laid out like the Hugging Face cache.

    store/blobs/<sha256>               file contents, read-only, named by hash
    store/manifests/<digest>.json      one artifact: [{path, sha256, size}] sorted by path
    store/trees/<digest>/<path>        the artifact as a directory runtimes open (hard links)
    store/stamps/<digest>.json         size, mtime, ctime and inode of each tree file when last hashed
    store/tmp/                         staging; anything here is garbage after a crash

An artifact's *digest* is the sha256 of its canonical manifest, so identical
artifacts share one entry and a digest names exactly one set of bytes.

Crash safety: every blob, manifest and tree is written under tmp/ and renamed
into place, so a reader never sees a half-written file under its final name.
Concurrency: writers hold a shared lock and ``gc`` an exclusive one (flock), so
gc never deletes a blob that a registration is about to reference.

Integrity on use: a tree is hashed against its manifest the first time it is opened, and
stamped with each file's size, mtime, ctime and inode. Later opens only compare the stamp
(a few ``stat`` calls); any write to a file changes its ctime, which no user tool can set
back, so a changed file is hashed again and a mismatch is refused, never served.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Optional

from ..errors import StoreCorruption, ZooError

__all__ = ["Store", "ManifestEntry", "Problem", "GcReport", "ManifestDamaged", "manifest_digest", "parse_manifest",
           "fsync_dir"]

CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
# errors that mean "this filesystem cannot hard-link here", where a copy is the right fallback; any other
# failure (an existing file above all) is raised, never written through
_NO_HARD_LINKS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    sha256: str
    size: int

    def as_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Problem:
    digest: str
    path: str
    issue: str  # "missing" | "hash mismatch" | "size mismatch" | "manifest missing" | "manifest unreadable" | ...


@dataclass
class GcReport:
    blobs: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    trees: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)  # what crashed writers left in tmp/
    compiled: list[str] = field(default_factory=list)  # compiled-model cache entries of unreferenced artifacts
    bytes_freed: int = 0
    dry_run: bool = False


class ManifestDamaged(StoreCorruption):
    """A manifest that is missing, unreadable, unsafe or not the one its digest names; ``issue`` says which."""

    def __init__(self, message: str, issue: str):
        super().__init__(message)
        self.issue = issue


def manifest_digest(entries: Iterable[ManifestEntry]) -> str:
    canonical = json.dumps(sorted((e.as_dict() for e in entries), key=lambda d: d["path"]),
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _hash_file(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _copy_new(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, which must not exist yet (O_EXCL, and no link followed at ``dst``)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o444)
    with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
        shutil.copyfileobj(fin, fout, CHUNK)


def _bytes_under(path: Path) -> int:
    """Bytes of a file, or of the files under a folder (not following links)."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
        return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    except OSError:
        return 0


def _unsafe(path: object) -> Optional[str]:
    """Why ``path`` cannot name a file inside a tree, or None: a manifest path is relative, in canonical
    form (no ``.``, ``..``, empty part, backslash or NUL) and so can only name a file below its tree."""
    if not isinstance(path, str) or not path:
        return "not a non-empty string"
    if "\\" in path or "\x00" in path:
        return "a backslash or NUL in it"
    if path.startswith("/"):
        return "absolute"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "not a normalised relative path (an empty, '.' or '..' part)"
    return None


def _safe_relpath(path: str | os.PathLike) -> str:
    """A path to store a file under: normalised to posix form, then refused unless it stays inside its tree."""
    rel = PurePosixPath(Path(path).as_posix()).as_posix() if str(path) else ""
    why = _unsafe(rel)
    if why:
        raise ZooError(f"refusing to store a file with unsafe path {str(path)!r} ({why})")
    return rel


def _check_digest(digest: str) -> None:
    """An artifact digest names files under store/: only a sha256 in hex may."""
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise StoreCorruption(f"{str(digest)[:80]!r} is not an artifact digest (64 hex digits); refused")


def parse_manifest(raw: bytes | str, digest: str, where: str) -> list[ManifestEntry]:
    """The entries of a manifest read from ``where``, checked before anything uses them.

    Every path must be safe (see ``_unsafe``) and distinct, no file may also be a folder of another, and
    the manifest must hash to ``digest``: an edited manifest that names other valid blobs is refused on
    every read, not only by ``zoo verify``.
    """
    short = digest[:12]
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ManifestDamaged(f"{where}: the manifest of artifact {short} is not valid JSON", "manifest unreadable") from None
    if not isinstance(data, list) or not data:
        raise ManifestDamaged(f"{where}: the manifest of artifact {short} is not a list of files", "manifest unreadable")
    entries, seen = [], set()
    for item in data:
        if not (isinstance(item, dict) and set(item) == {"path", "sha256", "size"}
                and isinstance(item["sha256"], str) and _SHA256.fullmatch(item["sha256"])
                and type(item["size"]) is int and item["size"] >= 0):
            raise ManifestDamaged(f"{where}: the manifest of artifact {short} has a malformed entry", "manifest unreadable")
        why = _unsafe(item["path"])
        if why:
            raise ManifestDamaged(f"{where}: the manifest of artifact {short} names an unsafe path "
                                  f"{str(item['path'])[:80]!r} ({why}); refused", "manifest unsafe path")
        if item["path"] in seen:
            raise ManifestDamaged(f"{where}: the manifest of artifact {short} names {item['path']!r} twice",
                                  "manifest unreadable")
        seen.add(item["path"])
        entries.append(ManifestEntry(item["path"], item["sha256"], item["size"]))
    for e in entries:
        parent = e.path.rpartition("/")[0]
        while parent:
            if parent in seen:
                raise ManifestDamaged(f"{where}: the manifest of artifact {short} names {parent!r} as a file and "
                                      "as a folder", "manifest unreadable")
            parent = parent.rpartition("/")[0]
    if manifest_digest(entries) != digest:
        raise ManifestDamaged(f"{where}: the manifest of artifact {short} does not hash to that digest (edited or "
                              "swapped); refused", "manifest hash mismatch")
    return entries


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.manifests = self.root / "manifests"
        self.trees = self.root / "trees"
        self.tmp = self.root / "tmp"
        self.stamps = self.root / "stamps"
        for d in (self.blobs, self.manifests, self.trees, self.tmp, self.stamps):
            d.mkdir(parents=True, exist_ok=True)
        self._gc_lock = self.root / ".gc.lock"
        # blobs this process hashed while storing them: sha256 -> (inode, ctime_ns) right after, so a
        # tree linked to them right away need not be hashed a second time
        self._verified: dict[str, tuple[int, int]] = {}

    # -- locking -----------------------------------------------------------
    @contextlib.contextmanager
    def _flock(self, exclusive: bool) -> Iterator[None]:
        import fcntl

        fd = os.open(self._gc_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def writing(self):
        """Hold while adding content until the registry references it (blocks gc)."""
        return self._flock(exclusive=False)

    # -- writing -----------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    def _write_hashed(self, tmp: Path, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Write ``chunks`` to ``tmp``, fsynced; their sha256 and size."""
        h, size = hashlib.sha256(), 0
        with open(tmp, "wb") as fout:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        return h.hexdigest(), size

    def _place(self, tmp: Path, digest: str) -> None:
        """Give the staged ``tmp`` its final, read-only name blobs/<digest> (a new inode: old links keep the old)."""
        os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp, self.blob_path(digest))
        fsync_dir(self.blobs)

    def add_file(self, src: Path, rel: str, *, move: bool = False) -> ManifestEntry:
        """Hash ``src`` and place its bytes at blobs/<sha256> atomically."""
        rel = _safe_relpath(rel)
        tmp = self.tmp / f"blob-{uuid.uuid4().hex}"
        try:
            if move:
                try:
                    os.replace(src, tmp)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    shutil.copyfile(src, tmp)
                digest, size = _hash_file(tmp)
            else:
                with open(src, "rb") as fin:
                    digest, size = self._write_hashed(tmp, iter(lambda: fin.read(CHUNK), b""))
            final = self.blob_path(digest)
            if final.exists() and self._check_file(final, ManifestEntry(rel, digest, size)) is None:
                tmp.unlink()  # reused as it is: touching it would change its ctime and void every tree's stamp
            else:  # new, or a damaged copy this fresh one replaces
                self._place(tmp, digest)
            st = final.stat()
            self._verified[digest] = (st.st_ino, st.st_ctime_ns)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return ManifestEntry(rel, digest, size)

    def ingest(self, entry: ManifestEntry, chunks: Iterable[bytes]) -> None:
        """Place bytes received from elsewhere (a shared store) at blobs/<sha256>, only if they hash
        to ``entry``: a short or altered download is dropped from tmp/ and never gets a final name."""
        tmp = self.tmp / f"blob-{uuid.uuid4().hex}"
        try:
            digest, size = self._write_hashed(tmp, chunks)
            if (digest, size) != (entry.sha256, entry.size):
                raise StoreCorruption(f"{entry.path}: the received bytes do not match the manifest's sha256 "
                                      f"{entry.sha256[:12]} ({size} bytes, expected {entry.size}); refused")
            self._place(tmp, digest)
            st = self.blob_path(digest).stat()
            self._verified[digest] = (st.st_ino, st.st_ctime_ns)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def lacks(self, digest: str) -> bool:
        """Whether ``digest`` cannot be opened from this store's own files: no manifest, or no tree and
        a blob gone (a home that shares a registry but not the files; see ``zoo.remote``)."""
        if not self.has(digest):
            return True
        if (self.trees / digest).is_dir():
            return False
        return any(not self.blob_path(e.sha256).exists() for e in self.manifest(digest))

    def add_tree(self, directory: Path, files: Iterable[str], *, move: bool = False) -> str:
        """Store ``files`` (paths relative to ``directory``) as one artifact; return its digest."""
        entries = [self.add_file(Path(directory) / f, f, move=move) for f in files]
        if not entries:
            raise ZooError(f"nothing to store: no files selected in {directory}")
        digest = self.write_manifest(entries)
        self.refresh_tree(digest)
        return digest

    def refresh_tree(self, digest: str) -> bool:
        """Drop the tree of ``digest`` if any of its files is not its blob (a replaced blob, a lost
        file), so the next use links it afresh; True when it was dropped."""
        final = self.trees / digest
        if not final.is_dir():
            return False
        for e in self.manifest(digest):
            try:
                st, blob = (final / e.path).stat(), self.blob_path(e.sha256).stat()
            except FileNotFoundError:
                break
            if (st.st_ino, st.st_dev) != (blob.st_ino, blob.st_dev) and self._check_file(final / e.path, e):
                break
        else:
            return False
        self.repair_tree(digest)
        return True

    def write_manifest(self, entries: list[ManifestEntry]) -> str:
        digest = manifest_digest(entries)
        body = json.dumps([e.as_dict() for e in sorted(entries, key=lambda e: e.path)], indent=1)
        parse_manifest(body, digest, "a manifest being written")  # the same checks every read makes
        final = self.manifests / f"{digest}.json"
        if not final.exists() or self._manifest_issue(digest):
            tmp = self.tmp / f"manifest-{uuid.uuid4().hex}"
            with open(tmp, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            fsync_dir(self.manifests)
        return digest

    # -- reading -----------------------------------------------------------
    def manifest(self, digest: str) -> list[ManifestEntry]:
        """The checked entries of ``digest`` (``parse_manifest``): a damaged manifest is one line, never used."""
        _check_digest(digest)
        try:
            raw = (self.manifests / f"{digest}.json").read_bytes()
        except FileNotFoundError:
            raise ManifestDamaged(f"artifact {digest[:12]} has no manifest in this home's store; "
                                  "run `zoo verify --repair`", "manifest missing") from None
        except OSError as exc:
            raise ManifestDamaged(f"artifact {digest[:12]}: its manifest cannot be read ({exc.strerror}); "
                                  "run `zoo verify --repair`", "manifest unreadable") from None
        try:
            return parse_manifest(raw, digest, "this home's store")
        except ManifestDamaged as exc:
            raise ManifestDamaged(f"{exc}; run `zoo verify --repair`", exc.issue) from None

    def _manifest_issue(self, digest: str) -> Optional[str]:
        try:
            self.manifest(digest)
        except ManifestDamaged as exc:
            return exc.issue
        return None

    def has(self, digest: str) -> bool:
        return (self.manifests / f"{digest}.json").exists()

    def tree(self, digest: str) -> Path:
        """The artifact as a directory, checked against its manifest; materialised on first use, atomically."""
        _check_digest(digest)
        final = self.trees / digest
        if not final.is_dir():
            from filelock import FileLock

            # build once across processes; the shared lock keeps gc from clearing our staging dir
            with FileLock(str(self.root / f".tree-{digest}.lock")), self.writing():
                self._materialise(digest, final)
        self._check_stamp(digest, final)
        return final

    def _check_stamp(self, digest: str, final: Path) -> None:
        """Hash the tree once per change of any file's (size, mtime, ctime, inode); refuse a mismatch."""
        entries = self.manifest(digest)
        stamp_path = self.stamps / f"{digest}.json"
        seen = []
        for e in entries:
            try:
                st = (final / e.path).stat()
            except FileNotFoundError:
                raise StoreCorruption(f"artifact {digest[:12]}: {e.path} is missing from its tree; "
                                      "run `zoo verify --repair`") from None
            seen.append([e.path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
        with contextlib.suppress(OSError, ValueError):
            if json.loads(stamp_path.read_text()) == seen:
                return
        for e, (_, _, _, ctime_ns, inode) in zip(entries, seen):
            if self._verified.get(e.sha256) == (inode, ctime_ns):
                continue  # hashed by this process as it stored it, and untouched since
            issue = self._check_file(final / e.path, e)
            if issue:
                raise StoreCorruption(f"artifact {digest[:12]}: {e.path} does not match its recorded sha256 "
                                      f"({issue}); run `zoo verify --repair`")
        tmp = self.tmp / f"stamp-{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(seen))
        os.replace(tmp, stamp_path)

    def _materialise(self, digest: str, final: Path) -> Path:
        if final.is_dir():
            return final
        entries = self.manifest(digest)
        staging = self.tmp / f"tree-{digest[:12]}-{uuid.uuid4().hex}"
        try:
            for e in entries:
                blob = self.blob_path(e.sha256)
                if not blob.exists():
                    raise StoreCorruption(f"artifact {digest[:12]}: blob for {e.path} is missing; "
                                          "run `zoo verify --repair`")
                dst = staging / _safe_relpath(e.path)  # checked again where it is used
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.parent.resolve() != staging.resolve() and staging.resolve() not in dst.parent.resolve().parents:
                    raise StoreCorruption(f"artifact {digest[:12]}: {e.path} would land outside its tree; refused")
                before = blob.stat()
                try:
                    os.link(blob, dst, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    _copy_new(blob, dst)  # a filesystem without hard links: a new file, never an existing one
                if self._verified.get(e.sha256) == (before.st_ino, before.st_ctime_ns):
                    after = blob.stat()  # a new link changes the inode's ctime, not its bytes
                    self._verified[e.sha256] = (after.st_ino, after.st_ctime_ns)
            try:
                os.rename(staging, final)
            except OSError:
                if not final.is_dir():  # lost a race to another process: theirs is identical
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    # -- maintenance -------------------------------------------------------
    def verify(self, digests: Iterable[str]) -> list[Problem]:
        """Re-hash every blob of the given artifacts (each blob once) and their trees."""
        problems: list[Problem] = []
        checked: dict[str, str | None] = {}  # sha -> issue or None
        for digest in digests:
            try:
                entries = self.manifest(digest)
            except ManifestDamaged as exc:
                problems.append(Problem(digest, "", exc.issue))
                continue
            tree = self.trees / digest
            for e in entries:
                if e.sha256 not in checked:
                    checked[e.sha256] = self._check_file(self.blob_path(e.sha256), e)
                if checked[e.sha256]:
                    problems.append(Problem(digest, e.path, checked[e.sha256]))
                elif tree.is_dir():
                    issue = self._check_tree_file(tree / e.path, e)
                    if issue:
                        problems.append(Problem(digest, f"trees/{e.path}", issue))
        return problems

    def _check_file(self, path: Path, e: ManifestEntry) -> str | None:
        if not path.exists():
            return "missing"
        sha, size = _hash_file(path)
        if size != e.size:
            return f"size mismatch ({size} bytes, expected {e.size})"
        return None if sha == e.sha256 else "hash mismatch"

    def _check_tree_file(self, path: Path, e: ManifestEntry) -> str | None:
        try:
            st, blob_st = path.stat(), self.blob_path(e.sha256).stat()
        except FileNotFoundError:
            return "missing"
        if (st.st_ino, st.st_dev) == (blob_st.st_ino, blob_st.st_dev):
            return None  # the same inode as the blob we just hashed
        return self._check_file(path, e)

    def repair_tree(self, digest: str) -> None:
        """Drop a materialised tree so the next use rebuilds it from blobs."""
        shutil.rmtree(self.trees / digest, ignore_errors=True)
        (self.stamps / f"{digest}.json").unlink(missing_ok=True)

    def gc(self, referenced: set[str], *, dry_run: bool = False) -> GcReport:
        """Remove manifests, trees and blobs that no referenced artifact needs.

        Call with the registry's referenced digests read *inside* ``exclusive()``.
        """
        report = GcReport(dry_run=dry_run)
        keep_blobs: set[str] = set()
        for m in self.manifests.glob("*.json"):
            digest = m.stem
            if digest in referenced:
                with contextlib.suppress(StoreCorruption):
                    keep_blobs.update(e.sha256 for e in self.manifest(digest))
            else:
                report.manifests.append(digest)
        for t in self.trees.iterdir():
            if t.name not in referenced:
                report.trees.append(t.name)
        for b in self.blobs.iterdir():
            if b.name not in keep_blobs:
                report.blobs.append(b.name)
                report.bytes_freed += b.stat().st_size
        leftovers = list(self.tmp.iterdir())
        for t in leftovers:
            report.staging.append(t.name)
            report.bytes_freed += _bytes_under(t)
        if not dry_run:
            for t in report.trees:
                shutil.rmtree(self.trees / t, ignore_errors=True)
                (self.root / f".tree-{t}.lock").unlink(missing_ok=True)
                (self.stamps / f"{t}.json").unlink(missing_ok=True)
            for d in report.manifests:
                (self.manifests / f"{d}.json").unlink(missing_ok=True)
            for b in report.blobs:
                (self.blobs / b).unlink(missing_ok=True)
            for t in leftovers:  # staging left by crashed writers (writers are locked out now)
                shutil.rmtree(t, ignore_errors=True) if t.is_dir() else t.unlink(missing_ok=True)
        return report

    def exclusive(self):
        """Hold for a gc: no writer can add content meanwhile."""
        return self._flock(exclusive=True)
