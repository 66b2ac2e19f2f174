"""Who may call /api and how often: optional API keys and a rate limit per client.

Both are checked in ASGI middleware before the request body is read, so a refused upload costs
nothing. Keys are configured and stored only as sha256 digests; a job belongs to the digest of
the key that created it ("" when keys are off).
"""

from __future__ import annotations

import hashlib
import math
import time

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from jobs.settings import Settings

API_PREFIX = "/api/"
BEARER = "bearer "


def key_digest(key: str) -> str:
    """What the settings and the job table hold instead of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def owner_of(request: Request) -> str:
    """The digest of the caller's key, as the access middleware found it."""
    return getattr(request.state, "owner", "")


class AccessControl:
    """Answers 401 without a known key (when keys are configured) and 429 past the rate limit."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.digests = frozenset(digest.lower() for digest in settings.api_key_hashes)
        self.limits: list[RateLimitItem] = (
            parse_many(settings.rate_limit) if settings.rate_limit else []
        )
        self.limiter = MovingWindowRateLimiter(_storage(settings.rate_limit_storage))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        owner = ""
        if self.digests:
            owner = self._owner(Headers(scope=scope).get("authorization", ""))
            if owner is None:
                refusal = JSONResponse(
                    {"detail": "An API key is required: send `Authorization: Bearer <key>`."},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await refusal(scope, receive, send)
                return
        retry_after = await self._retry_after(owner or _client_address(scope))
        if retry_after:
            refusal = JSONResponse(
                {"detail": f"Too many requests; try again in {retry_after} s."},
                status_code=429,
                headers={"Retry-After": str(retry_after)},
            )
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})["owner"] = owner
        await self.app(scope, receive, send)

    def _owner(self, authorization: str) -> str | None:
        """The digest of a configured bearer key, else None."""
        if not authorization.lower().startswith(BEARER):
            return None
        digest = key_digest(authorization[len(BEARER) :].strip())
        return digest if digest in self.digests else None

    async def _retry_after(self, client: str) -> int:
        """Seconds until the client may call again; 0 when it is within every limit."""
        for limit in self.limits:
            if not await self.limiter.hit(limit, client):
                stats = await self.limiter.get_window_stats(limit, client)
                return max(1, math.ceil(stats.reset_time - time.time()))
        return 0


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def _storage(url: str) -> Storage:
    """limits' async storage; its Redis flavour through redis-py, already a dependency."""
    options = {"implementation": "redispy"} if url.startswith("async+redis") else {}
    return storage_from_string(url, **options)
