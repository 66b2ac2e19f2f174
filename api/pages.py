"""The frontend's pages and assets, served from frontend/ as they are."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from jobs.settings import ROOT

FRONTEND_DIR = ROOT / "frontend"

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    path: Path = FRONTEND_DIR / name
    if not path.is_file():
        raise HTTPException(404, f"The frontend page {name} is not installed.")
    return FileResponse(path)


@router.get("/")
def draw_page() -> FileResponse:
    return _page("index.html")


@router.get("/batch")
def batch_page() -> FileResponse:
    return _page("batch.html")


@router.get("/jobs/{job_id}")
def job_page(job_id: str) -> FileResponse:
    """The batch page reads the job id from the URL."""
    return _page("batch.html")
