"""``zoo verify --repair``: restore damaged artifacts from what they were made of.

A checkpoint (``torch-fp32``) is re-read from its pinned source: a local folder or package
must still hold the same bytes (each file is checked against the pinned sha256), a hub
source is fetched again at the pinned commit. A converted artifact is rebuilt from the
repaired checkpoint and gated again. Trees are relinked from the repaired blobs. What cannot
be restored (a source that changed, an old revision's artifact) is reported, not guessed.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import ZooError

__all__ = ["RepairReport", "repair"]


@dataclass
class RepairReport:
    refetched: list[str] = field(default_factory=list)  # "model target" restored from the source
    rebuilt: list[str] = field(default_factory=list)  # "model target" converted again
    relinked: int = 0  # trees dropped so they are linked afresh from good blobs
    unrepairable: list[str] = field(default_factory=list)  # why, per artifact
    remaining: list = field(default_factory=list)  # problems still found after the repair


def _refetch_checkpoint(reg, artifact) -> Optional[str]:
    """Put the pinned checkpoint's bytes back into the store; None, or why it cannot be done."""
    from ..store.sources import fetch_hub, local_dir, parse_source

    from ..store.blobs import ManifestDamaged, ManifestEntry, manifest_digest

    revision = artifact.revision
    try:
        entries = reg.store.manifest(artifact.store_digest)
    except ManifestDamaged:
        # the registry keeps the checkpoint's manifest too: restore the store's copy from it when it is the one
        # the digest names
        entries = [ManifestEntry(d["path"], d["sha256"], d["size"]) for d in revision.manifest or []]
        if not entries or manifest_digest(entries) != artifact.store_digest:
            return ("its manifest is damaged and the registry's copy does not match the pinned digest; "
                    "re-register the model with --force")
    wanted = {e.path: e for e in entries}
    staging = Path(tempfile.mkdtemp(prefix="repair-", dir=reg.store.tmp))
    try:
        try:
            src = parse_source(revision.source)
            directory = fetch_hub(src, revision.resolved_id, staging).directory if src.kind == "hf" else local_dir(src)
        except ZooError as exc:
            return str(exc)
        with reg.store.writing():
            for path, entry in wanted.items():
                try:
                    got = reg.store.add_file(directory / path, path)
                except FileNotFoundError:
                    return f"{revision.source} no longer has {path}; re-register the model from a source that does"
                if got.sha256 != entry.sha256:
                    return (f"{revision.source} has changed since it was pinned ({path} differs); "
                            "re-register the model with --force to pin the new content")
            reg.store.write_manifest(entries)  # rewritten where it was missing or damaged
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def repair(reg, name: Optional[str] = None, progress: Callable[[str], None] = lambda line: None) -> RepairReport:
    from .pipeline import convert

    report = RepairReport()
    artifacts, problems = reg.verify(name)
    bad = {p.digest for p in problems}
    damaged = [a for a in artifacts if a.store_digest in bad]
    # checkpoints first: converted artifacts are rebuilt from them
    for a in sorted(damaged, key=lambda a: a.target != "torch-fp32"):
        label = f"{a.revision.model.name} {a.target}"
        if a.target == "torch-fp32":
            progress(f"re-reading {label} from {a.revision.source}")
            why = _refetch_checkpoint(reg, a)
            if why:
                report.unrepairable.append(f"{label}: {why}")
            else:
                report.refetched.append(label)
    for digest in sorted(bad):
        reg.store.repair_tree(digest)
        report.relinked += 1
    _, still = reg.verify(name)
    still_bad = {p.digest for p in still}
    for a in damaged:
        if a.target == "torch-fp32" or a.store_digest not in still_bad:
            continue
        label = f"{a.revision.model.name} {a.target}"
        current = reg.resolve(a.revision.model.name).revision
        if current.id != a.revision.id:
            report.unrepairable.append(f"{label}: an artifact of an older revision; convert the current one instead")
            continue
        progress(f"rebuilding {label}")
        outcome = convert(reg, a.revision.model.name, [a.target], rebuild=True)[0]
        if outcome.status == "ready":
            report.rebuilt.append(label)
        else:
            report.unrepairable.append(f"{label}: rebuilt, but {outcome.status}: {outcome.error}")
    _, report.remaining = reg.verify(name)
    return report
