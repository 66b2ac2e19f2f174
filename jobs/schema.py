"""The tables: a job, its uploaded items, their results, and the batch sizes the workers ran."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True)}


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


UNFINISHED = (JobStatus.queued, JobStatus.running)


class Job(Base):
    """One request: `updated_at` moves with every batch, so the sweep can tell a stalled job.

    `owner` is the digest of the API key that created it ("" when keys are off).
    """

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.queued)
    model: Mapped[str] = mapped_column(String(64))
    total: Mapped[int]
    for_canvas: Mapped[bool] = mapped_column(default=False)
    owner: Mapped[str] = mapped_column(String(64), default="", server_default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_jobs_status_updated_at", "status", "updated_at"),
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
    )


class Item(Base):
    """One uploaded image; its bytes are dropped once the job is finished.

    `attempts` counts the times a worker took it up: one that is taken again and again without a
    result (its file kills the worker) is failed instead of stalling every worker forever.
    """

    __tablename__ = "items"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    filename: Mapped[str] = mapped_column(Text)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")


class Result(Base):
    """The outcome of one item, written once per (job, item) however often a task is delivered."""

    __tablename__ = "results"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    status: Mapped[str] = mapped_column(String(16))
    prediction: Mapped[str | None] = mapped_column(String(8))
    confidence: Mapped[float | None] = mapped_column(Float)
    top5: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    model_input: Mapped[str | None] = mapped_column(Text)


class Batch(Base):
    """One forward pass: how many images it carried, for the coalescing benchmark."""

    __tablename__ = "batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    size: Mapped[int]
    coalesced: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
