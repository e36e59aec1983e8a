"""Registry tables (SQLAlchemy 2.0 typed ORM).

Portable on purpose: no SQLite-only types or SQL, so the same schema runs on
PostgreSQL. JSON columns use the generic ``JSON`` type. Every change to this
file needs an Alembic migration in ``zoo/registry/migrations/versions``.

A model points at its *current* revision; a revision owns artifacts, and the
checkpoint itself is the ``torch-fp32`` artifact, so every runtime loads the
same way: through an artifact's materialised store tree.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON, BigInteger, Boolean, DateTime, Enum, ForeignKey, Integer, MetaData, String, Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "Model", "Revision", "Artifact", "ArtifactStatus", "Benchmark", "Alias", "Job", "JobStatus", "Run"]

# Deterministic constraint names keep migrations portable across dialects.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ArtifactStatus(str, enum.Enum):
    pending = "pending"
    building = "building"
    ready = "ready"
    failed = "failed"
    rejected = "rejected"


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(1000))
    task: Mapped[str] = mapped_column(String(50), default="sentence-embedding")
    dim: Mapped[int] = mapped_column(Integer)
    max_seq_length: Mapped[int] = mapped_column(Integer)
    pooling: Mapped[str] = mapped_column(String(50))
    normalize: Mapped[bool] = mapped_column(Boolean)
    query_prompt: Mapped[Optional[str]] = mapped_column(Text)
    document_prompt: Mapped[Optional[str]] = mapped_column(Text)
    license: Mapped[Optional[str]] = mapped_column(String(100))
    # Per-model fidelity floor overrides ({"mean_cosine": ..., ...}); per-call flags override these.
    fidelity_floor: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # ["text"] (NULL: text only, as before 0005) or ["text", "image"]; and how images become pixels
    modalities: Mapped[Optional[list[str]]] = mapped_column(JSON)
    # the widths a Matryoshka-trained model declares ([] : declared, widths not listed); null: none declared
    matryoshka_dims: Mapped[Optional[list[int]]] = mapped_column(JSON)
    image_preprocessing: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # a model that runs its own code, trusted with --trust-remote-code: {path: sha256} of each code file,
    # checked before every load; null: no code of its own (or never trusted, so never registered)
    trusted_code: Mapped[Optional[dict[str, str]]] = mapped_column(JSON)
    # false: the Pooling module leaves prompt tokens out of the vector (include_prompt: false); null: true
    include_prompt: Mapped[Optional[bool]] = mapped_column(Boolean)
    # what the model is for (zoo.engine.kinds): embedding (every row before 0009) or reranker; and a reranker's
    # score activation (sigmoid, identity, tanh, relu)
    kind: Mapped[str] = mapped_column(String(20), default="embedding", server_default="embedding")
    activation: Mapped[Optional[str]] = mapped_column(String(20))
    # Points at the revision `load(name)` uses; use_alter breaks the models<->revisions cycle.
    current_revision_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("revisions.id", use_alter=True, ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    revisions: Mapped[list["Revision"]] = relationship(
        back_populates="model", foreign_keys="Revision.model_id",
        cascade="all, delete-orphan", order_by="Revision.id")
    current_revision: Mapped[Optional["Revision"]] = relationship(
        foreign_keys=[current_revision_id], post_update=True)


class Revision(Base):
    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("model_id", "resolved_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(1000))
    requested_ref: Mapped[Optional[str]] = mapped_column(String(200))
    # A hub commit sha, or "sha256:<digest of the file manifest>" for local sources.
    resolved_id: Mapped[str] = mapped_column(String(100))
    # [{"path": ..., "sha256": ..., "size": ...}, ...] sorted by path.
    manifest: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[Model] = relationship(back_populates="revisions", foreign_keys=[model_id])
    artifacts: Mapped[list["Artifact"]] = relationship(
        back_populates="revision", cascade="all, delete-orphan", order_by="Artifact.id")


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("revision_id", "target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    target: Mapped[str] = mapped_column(String(100))  # e.g. torch-fp32, onnx-int8-avx512_vnni
    format: Mapped[str] = mapped_column(String(50))  # torch | onnx | openvino
    precision: Mapped[str] = mapped_column(String(20))  # fp32 | fp16 | bf16 | int8
    variant: Mapped[Optional[str]] = mapped_column(String(100))  # o3, avx512_vnni, ...
    store_digest: Mapped[Optional[str]] = mapped_column(String(64))
    size_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    status: Mapped[ArtifactStatus] = mapped_column(
        Enum(ArtifactStatus, name="artifact_status", native_enum=False, length=20),
        default=ArtifactStatus.pending)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    fidelity: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # int8/uint8 calibration ranges and what each compact precision costs (``zoo.engine.precision``);
    # null until the gate or the first compact request computes them
    precision_ranges: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    revision: Mapped[Revision] = relationship(back_populates="artifacts")
    benchmarks: Mapped[list["Benchmark"]] = relationship(
        back_populates="artifact", cascade="all, delete-orphan")


class Benchmark(Base):
    __tablename__ = "benchmarks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    hardware_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    artifact: Mapped[Artifact] = relationship(back_populates="benchmarks")


class Alias(Base):
    __tablename__ = "aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    revision: Mapped[Revision] = relationship()


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"  # its worker died (server restart, kill); retry it


class Job(Base):
    """Long work the service runs outside the request path (a conversion), in a worker process."""
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))  # convert
    model: Mapped[str] = mapped_column(String(200), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="job_status", native_enum=False, length=20), default=JobStatus.queued)
    progress: Mapped[float] = mapped_column(default=0.0)
    message: Mapped[Optional[str]] = mapped_column(Text)
    error: Mapped[Optional[str]] = mapped_column(Text)
    result: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    pid: Mapped[Optional[int]] = mapped_column(Integer)
    host: Mapped[Optional[str]] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Run(Base):
    """One dataset job (``zoo embed-dataset``): what it read, which artifact made its vectors, where they went.

    The artifact is kept by value (target, store digest, runtime precision), not by foreign key: the
    output outlives the artifact row, and ``zoo runs --stale`` compares it with what serves now.
    """
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    revision: Mapped[str] = mapped_column(String(100))
    artifact_target: Mapped[Optional[str]] = mapped_column(String(100))  # None: --per-node-best
    store_digest: Mapped[Optional[str]] = mapped_column(String(64))
    runtime_precision: Mapped[Optional[str]] = mapped_column(String(20))
    input_path: Mapped[str] = mapped_column(Text)
    input_digest: Mapped[str] = mapped_column(String(64))
    output_path: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="run_status", native_enum=False, length=20), default=JobStatus.running)
    shards_total: Mapped[int] = mapped_column(Integer)
    shards_done: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
