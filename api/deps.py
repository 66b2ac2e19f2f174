"""What routes need from the app: its settings and its Celery client, set by the app factory."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from jobs.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _celery(request: Request) -> Celery:
    return request.app.state.celery


SettingsDep = Annotated[Settings, Depends(_settings)]
CeleryDep = Annotated[Celery, Depends(_celery)]
