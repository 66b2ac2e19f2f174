"""Every knob of the service in one class, read from `HWR_*` environment variables."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from ml.file_structure import FileLimits

ROOT = Path(__file__).resolve().parents[1]
# A list setting, read from the environment as `a,b` or as JSON `["a", "b"]`.
EnvList = Annotated[list[str], NoDecode]
# The Celery queues workers consume: CPU workers take `cpu`, GPU workers `gpu` (and `cpu`).
JobQueue = Literal["cpu", "gpu"]


class Settings(BaseSettings):
    """Defaults run the embedded system: SQLite and a filesystem broker under ./var/."""

    model_config = SettingsConfigDict(env_prefix="HWR_")

    state_dir: Path = Field(ROOT / "var", description="Where the embedded database and broker live")
    database_url: str = Field("", description="SQLAlchemy URL; empty: SQLite in state_dir")
    broker_url: str = Field(
        "filesystem://localhost/",
        description="Celery broker; filesystem:// keeps messages in state_dir",
    )
    broker_key_prefix: str = Field("", description="Prefix of every Redis key, to share one Redis")
    models_dir: Path = Field(ROOT / "models", description="Folder holding one folder per model")
    model_names: EnvList = Field(["emnist47", "emnist62"], description="Models clients may pick")
    default_model: str = Field("emnist47", description="Model used when a request names none")
    job_queue: JobQueue = Field(
        "cpu", description="Celery queue the gateway sends jobs to (cpu|gpu)"
    )

    max_file_bytes: int = Field(10_000_000, description="Largest single image; bigger ones fail")
    max_request_bytes: int = Field(100_000_000, description="Largest request body (413 beyond)")
    max_files: int = Field(1000, description="Most images per job, counting zip entries")
    max_zip_entries: int = Field(1000, description="Most entries in one zip archive")
    max_zip_bytes: int = Field(
        200_000_000, description="Most uncompressed bytes from all the zips of one request"
    )
    max_image_pixels: int = Field(25_000_000, description="Largest image (width x height)")
    max_image_frames: int = Field(
        100, description="Most animation frames (or TIFF pages) in one image"
    )
    max_jpeg_scans: int = Field(100, description="Most scans in one progressive JPEG")
    max_image_metadata_entries: int = Field(
        10_000,
        description="Most metadata entries, chunks or blocks in one image file (tags, strips, ...)",
    )

    predict_wait_s: float = Field(2.0, description="How long /predict waits before answering 202")
    inference_batch_size: int = Field(128, description="Items per forward pass in batch jobs")
    job_task_items: int = Field(
        1024, gt=0, description="Items per worker task: a larger job is split so workers share it"
    )
    inference_batch_bytes: int = Field(
        64_000_000,
        description="Most image bytes a worker task loads for one batch (at least one image)",
    )
    max_item_attempts: int = Field(
        3,
        ge=1,
        description="Times a worker may take up an image without a result before it fails "
        "(its file kills the worker)",
    )
    coalesce_max_batch: int = Field(
        64, description="Most canvas images in one forward pass (and taken off the canvas queue)"
    )
    coalesce_max_wait_ms: float = Field(
        50.0,
        description="Longest a batch of concurrent canvas images waits to fill "
        "(a lone image never waits); 0: no wait",
    )
    coalesce_gap_ms: float = Field(
        3.0,
        description="On the canvas queue, a batch of concurrent drawings stops waiting for more "
        "once none came for this long; 0: no wait",
    )
    torch_threads: int = Field(
        1,
        description="torch threads per worker process; more collapse when cores are shared",
    )
    worker_concurrency: int = Field(32, description="Task threads per worker process")
    device: str = Field("", description="torch device for inference; empty: CUDA when present")
    inference_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 where the CPU or GPU computes it natively"
    )

    api_key_hashes: EnvList = Field(
        [],
        description="sha256 hex digests of the accepted API keys (`hwr hash-key`); empty: no keys",
    )
    rate_limit: str = Field(
        "1200/minute",
        description="Requests per client to /api, e.g. `20/second;1200/minute`; empty: no limit",
    )
    rate_limit_storage: str = Field(
        "async+memory://",
        description="Where rate-limit counters live; `async+redis://host:6379/1` shares them",
    )
    cors_origins: EnvList = Field([], description="Origins allowed to call /api from a browser")

    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one JSON object per line; `text`: for people"
    )
    log_level: str = Field(
        "INFO", description="Root log level: our loggers, uvicorn, Celery and libraries alike"
    )
    worker_metrics_port: int = Field(
        9808, description="Port of each worker's Prometheus endpoint; 0: none"
    )

    sweep_interval_s: float = Field(30.0, description="How often the gateway sweeps the job table")
    stuck_after_s: float = Field(300.0, description="Re-enqueue unfinished jobs idle this long")
    db_retry_s: float = Field(
        120.0,
        description="How long workers retry a database write before leaving the job to the sweep",
    )
    retention_s: float = Field(7 * 86400.0, description="Delete finished jobs after this long")

    @field_validator("model_names", "api_key_hashes", "cors_origins", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """`HWR_MODEL_NAMES=emnist47,emnist62` works as people write it; JSON still does."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]

    @model_validator(mode="after")
    def _embedded_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.state_dir / 'hwr.sqlite'}"
        return self

    def file_limits(self) -> FileLimits:
        """The image-file limits as `ml` takes them (imported here: `ml` loads torch, which
        only the gateway and the worker need)."""
        from ml.file_structure import FileLimits

        return FileLimits(
            max_pixels=self.max_image_pixels,
            max_frames=self.max_image_frames,
            max_jpeg_scans=self.max_jpeg_scans,
            max_metadata_entries=self.max_image_metadata_entries,
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
