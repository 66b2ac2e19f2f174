"""What routes need from the app, set up by the app factory: settings, Celery, the watcher, and
the reader of canvas-queue answers (None where the canvas queue is off)."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from api.access import owner_of
from api.canvas_answers import CanvasAnswers
from api.completion import CompletionWatcher
from jobs.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _celery(request: Request) -> Celery:
    return request.app.state.celery


def _watcher(request: Request) -> CompletionWatcher:
    return request.app.state.watcher


def _canvas_answers(request: Request) -> CanvasAnswers | None:
    return request.app.state.canvas_answers


SettingsDep = Annotated[Settings, Depends(_settings)]
CeleryDep = Annotated[Celery, Depends(_celery)]
WatcherDep = Annotated[CompletionWatcher, Depends(_watcher)]
CanvasAnswersDep = Annotated[CanvasAnswers | None, Depends(_canvas_answers)]
OwnerDep = Annotated[str, Depends(owner_of)]
