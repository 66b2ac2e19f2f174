"""Job store: every read and write of jobs, items, results and batch sizes goes through here.

Writes are conditional on the job's status, so a late or repeated worker never undoes a cancel
or a finish, and results are upserted by (job, item) so redelivered tasks neither duplicate nor
lose them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Exists, Row, Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from jobs.schema import UNFINISHED, Batch, Item, Job, JobStatus, Result, utcnow

# Postgres NOTIFY channel whose payload is the id of each job a worker finishes.
FINISHED_CHANNEL = "hwr_job_finished"


@dataclass(frozen=True)
class NewItem:
    """An accepted upload: its bytes, or the reason it failed validation at the gateway."""

    filename: str
    data: bytes | None = None
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the worker found for one item."""

    index: int
    status: str
    prediction: str | None = None
    confidence: float | None = None
    top5: list[dict[str, Any]] | None = None
    error: str | None = None
    model_input: str | None = None

    @classmethod
    def failure(cls, index: int, error: str) -> Outcome:
        return cls(index=index, status="failed", error=error)


@dataclass(frozen=True)
class AnsweredDrawing:
    """A canvas drawing a worker answered straight from the canvas queue (`jobs.canvas_queue`):
    stored afterwards as the finished one-item job it would have been."""

    job_id: uuid.UUID
    job_status: str
    model: str
    owner: str
    filename: str
    request_hash: str
    created_at: datetime
    started_at: datetime
    finished_at: datetime
    outcome: Outcome


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    failed: int


def create_job(
    session: Session,
    model: str,
    items: Sequence[NewItem],
    for_canvas: bool = False,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    owner: str = "",
    job_id: uuid.UUID | None = None,
) -> Job:
    """A queued job (under `job_id` when given); items that failed validation get their failed
    result right away."""
    job = Job(
        id=job_id or uuid.uuid4(),
        owner=owner,
        model=model,
        total=len(items),
        for_canvas=for_canvas,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    session.add(job)
    session.flush()
    session.add_all(
        Item(job_id=job.id, index=index, filename=item.filename, data=item.data)
        for index, item in enumerate(items)
    )
    failures = [Outcome.failure(i, item.error) for i, item in enumerate(items) if item.error]
    if failures:
        session.flush()
        save_outcomes(session, job.id, failures)
    return job


def get_job(
    session: Session, job_id: uuid.UUID, for_update: bool = False, owner: str | None = None
) -> Job | None:
    """The job, or None when it is missing or (with `owner`) belongs to another key.

    `for_update` locks its row FOR NO KEY UPDATE, as an UPDATE of it does: FOR UPDATE would also
    wait for the key-share locks that inserting results takes on the row, and a task holding one
    goes on to update the job, which waits for this lock: a deadlock between a job's tasks.
    """
    lock = {"key_share": True} if for_update else None
    job = session.get(Job, job_id, with_for_update=lock)
    if job is None or (owner is not None and job.owner != owner):
        return None
    return job


def find_by_idempotency_key(session: Session, key: str, owner: str) -> Job | None:
    query = select(Job).where(Job.owner == owner, Job.idempotency_key == key)
    return session.scalar(query)


def finished_among(session: Session, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    query = select(Job.id).where(Job.id.in_(job_ids), Job.status.not_in(UNFINISHED))
    return set(session.scalars(query))


def count_jobs_by_status(session: Session) -> dict[str, int]:
    query = select(Job.status, func.count()).group_by(Job.status)
    return {status: count for status, count in session.execute(query).all()}


def progress(session: Session, job: Job) -> Progress:
    """Done counts every finished item, failed ones included."""
    query = select(Result.status, func.count()).where(Result.job_id == job.id)
    counts = dict(session.execute(query.group_by(Result.status)).all())
    failed = counts.get("failed", 0)
    return Progress(total=job.total, done=counts.get("succeeded", 0) + failed, failed=failed)


def results_page(session: Session, job_id: uuid.UUID, offset: int, limit: int) -> list[Row]:
    """Items in upload order with their result columns (None while pending)."""
    query = (
        select(Item.index, Item.filename, Result)
        .outerjoin(Result, (Result.job_id == Item.job_id) & (Result.index == Item.index))
        .where(Item.job_id == job_id)
        .order_by(Item.index)
        .offset(offset)
        .limit(limit)
    )
    return list(session.execute(query).all())


def start_job(session: Session, job_id: uuid.UUID) -> Job | None:
    """Mark a queued job running; None when it is missing or already finished."""
    job = get_job(session, job_id, for_update=True)
    if job is None or job.status not in UNFINISHED:
        return None
    job.status = JobStatus.running
    job.started_at = job.started_at or utcnow()
    job.updated_at = utcnow()
    return job


def pending_items(
    session: Session, job_id: uuid.UUID, limit: int, after: int = -1, stop: int | None = None
) -> list[Item]:
    """The next items past index `after` (and before `stop`) without a result, only while the job
    is still running."""
    return list(session.scalars(_pending(job_id, after, stop, Item).limit(limit)))


def next_items(
    session: Session,
    job_id: uuid.UUID,
    limit: int,
    max_bytes: int,
    after: int = -1,
    stop: int | None = None,
) -> list[Item]:
    """The next pending items (as `pending_items`), at most `limit` of them holding at most
    `max_bytes` of files (but at least one).

    An item read before and still without a result (its worker died on it, or was stopped) comes
    alone, and a batch ends before one: a file that kills workers is then found, and failed, by
    itself, never with the rest of its batch (`start_reading` counts the reads).
    """
    size = func.coalesce(func.length(Item.data), 0)
    candidates = session.execute(
        _pending(job_id, after, stop, Item.index, Item.attempts, size).limit(limit)
    ).all()
    taken: list[int] = []
    total = 0
    for index, attempts, nbytes in candidates:
        if taken and (attempts or total + nbytes > max_bytes):
            break
        taken.append(index)
        total += nbytes
        if attempts:
            break
    if not taken:
        return []
    chosen = select(Item).where(Item.job_id == job_id, Item.index.in_(taken))
    return list(session.scalars(chosen.order_by(Item.index)))


def start_reading(session: Session, job_id: uuid.UUID, indices: list[int]) -> dict[int, int]:
    """Count one more read of each of these items that still lacks a result while the job runs,
    and answer their counts by index: the items to read. Commit before reading them, so that a
    worker dying on one still counts, and count only just before: a batch waiting its turn is
    not being read.
    """
    counting = (
        update(Item)
        .where(
            Item.job_id == job_id,
            Item.index.in_(indices),
            ~_has_result(),
            select(Job.id).where(Job.id == Item.job_id, Job.status == JobStatus.running).exists(),
        )
        .values(attempts=Item.attempts + 1)
        .returning(Item.index, Item.attempts)
        .execution_options(synchronize_session=False)
    )
    return {index: attempts for index, attempts in session.execute(counting)}


def _has_result() -> Exists:
    """Whether the item of the enclosing statement has its result."""
    return (
        select(Result.index)
        .where(Result.job_id == Item.job_id, Result.index == Item.index)
        .exists()
    )


def _pending(job_id: uuid.UUID, after: int, stop: int | None, *columns: Any) -> Select:
    """`columns` of the job's items past `after` (and before `stop`) without a result, in order,
    while the job is running.

    Walking the primary key from `after` keeps each call to one short index range; an anti-join
    over the whole job gets a full-scan plan on Postgres that makes a 10,000-item job quadratic.
    """
    query = (
        select(*columns)
        .join(Job, Job.id == Item.job_id)
        .where(
            Item.job_id == job_id,
            Item.index > after,
            Job.status == JobStatus.running,
            ~_has_result(),
        )
        .order_by(Item.index)
    )
    if stop is not None:
        query = query.where(Item.index < stop)
    return query


def finish_if_complete(session: Session, job_id: uuid.UUID) -> None:
    """Finish the job once every item has its result, whichever of its tasks gets there last.

    Each task calls this in the transaction of its last save, and saves lock the job's row: the
    count of the last one to take the lock sees every other task's results committed.
    """
    job = get_job(session, job_id, for_update=True)
    if job is None:
        return
    results = session.scalar(select(func.count()).where(Result.job_id == job_id))
    if results >= job.total:
        finish_job(session, job_id, JobStatus.succeeded)


def save_outcomes(session: Session, job_id: uuid.UUID, outcomes: Iterable[Outcome]) -> None:
    """Upsert results in one statement and mark the job as making progress."""
    # vars, not dataclasses.asdict, which deep-copies every top5 list.
    rows = [{"job_id": job_id, **vars(outcome)} for outcome in outcomes]
    if not rows:
        return
    insert = _dialect(session).insert(Result.__table__)
    columns = [name for name in rows[0] if name not in ("job_id", "index")]
    # One statement, its rows as parameters: compiled once and cached, however many rows come.
    # A success stays: only a race between two deliveries could bring another outcome for it.
    upsert = insert.on_conflict_do_update(
        index_elements=["job_id", "index"],
        set_={name: insert.excluded[name] for name in columns},
        where=Result.__table__.c.status != "succeeded",
    )
    session.execute(upsert, rows)
    session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow()))


def save_answered_drawings(session: Session, drawings: Sequence[AnsweredDrawing]) -> set[uuid.UUID]:
    """Store answered drawings as finished jobs; answers the ids of those stored.

    A drawing whose job id exists already is left alone: its gateway stopped waiting and queued
    it as a job of its own, which a worker reads as any other.
    """
    if not drawings:
        return set()
    jobs = [
        {
            "id": d.job_id,
            "status": d.job_status,
            "model": d.model,
            "total": 1,
            "for_canvas": True,
            "owner": d.owner,
            "request_hash": d.request_hash,
            "created_at": d.created_at,
            "started_at": d.started_at,
            "finished_at": d.finished_at,
            "updated_at": d.finished_at,
        }
        for d in drawings
    ]
    insert = _dialect(session).insert(Job.__table__).on_conflict_do_nothing(index_elements=["id"])
    stored = set(session.scalars(insert.returning(Job.id), jobs))
    if not stored:
        return stored
    kept = [d for d in drawings if d.job_id in stored]
    items = [{"job_id": d.job_id, "index": 0, "filename": d.filename, "attempts": 1} for d in kept]
    session.execute(_dialect(session).insert(Item.__table__), items)
    results = [{"job_id": d.job_id, **vars(d.outcome), "index": 0} for d in kept]
    session.execute(_dialect(session).insert(Result.__table__), results)
    return stored


def _dialect(session: Session) -> Any:
    """The dialect module whose `insert` has ON CONFLICT: Postgres in production, SQLite here."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def finish_job(session: Session, job_id: uuid.UUID, status: JobStatus) -> None:
    """Close a running job and drop its image bytes; a canceled job stays canceled."""
    finished = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running)
        .values(status=status, finished_at=utcnow(), updated_at=utcnow())
    )
    if finished.rowcount:
        _drop_image_bytes(session, job_id)
        _announce_finished(session, job_id)


def cancel_job(session: Session, job: Job) -> None:
    job.status = JobStatus.canceled
    job.finished_at = job.updated_at = utcnow()
    _drop_image_bytes(session, job.id)
    _announce_finished(session, job.id)


def delete_job(session: Session, job: Job) -> None:
    session.delete(job)


def _announce_finished(session: Session, job_id: uuid.UUID) -> None:
    """On Postgres, tell listening gateways at commit, so a waiting /predict need not poll."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(FINISHED_CHANNEL, str(job_id))))


def _drop_image_bytes(session: Session, job_id: uuid.UUID) -> None:
    session.execute(update(Item).where(Item.job_id == job_id).values(data=None))


def claim_stuck_jobs(session: Session, idle_for: timedelta) -> list[uuid.UUID]:
    """Unfinished jobs idle past `idle_for`, touched so concurrent sweepers don't claim them too."""
    stuck = session.execute(
        update(Job)
        .where(Job.status.in_(UNFINISHED), Job.updated_at < utcnow() - idle_for)
        .values(updated_at=utcnow())
        .returning(Job.id)
    )
    return list(stuck.scalars())


def delete_expired(session: Session, older_than: timedelta) -> int:
    """Delete finished jobs (with their items and results) and batch records past retention."""
    cutoff = utcnow() - older_than
    expired = session.execute(
        delete(Job).where(Job.status.not_in(UNFINISHED), Job.finished_at < cutoff)
    )
    session.execute(delete(Batch).where(Batch.created_at < cutoff))
    return expired.rowcount


def record_batch(session: Session, size: int, coalesced: bool) -> None:
    session.add(Batch(size=size, coalesced=coalesced))


def batch_sizes(
    session: Session, since: datetime | None = None, coalesced: bool | None = None
) -> list[int]:
    """Sizes of the forward passes run since `since`, oldest first (read by the benchmark)."""
    query = select(Batch.size).order_by(Batch.id)
    if since is not None:
        query = query.where(Batch.created_at >= since)
    if coalesced is not None:
        query = query.where(Batch.coalesced == coalesced)
    return list(session.scalars(query))
