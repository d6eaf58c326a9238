"""What a route gets from the app: its settings and the container's SearchService (set by pictrace.api.create_app
on app.state)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pictrace.search import SearchService
from pictrace.settings import Settings


def settings_of(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def service_of(request: Request) -> SearchService:
    """The app's SearchService (made on first use)."""
    service: SearchService = request.app.state.service()
    return service


AppSettings = Annotated[Settings, Depends(settings_of)]
Service = Annotated[SearchService, Depends(service_of)]
