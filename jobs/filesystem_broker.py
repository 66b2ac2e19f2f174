"""Celery's filesystem broker (the embedded default) without its torn-read race.

kombu's transport creates a message or exchange file before it writes it, so a reader in
another process can meet it empty and fail with a JSONDecodeError (kombu issue #1551). Here
messages appear only once complete (written under a temporary name, then renamed), and a table
read while it is being written is read again.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

T = TypeVar("T")

TORN_READ_RETRIES = 50
TORN_READ_PAUSE_S = 0.01
# `_get` takes only files named `<...>.<queue>.msg`, so it never sees one being written.
PARTIAL_SUFFIX = ".partial"


def _again_while_torn(read: Callable[[], T]) -> T:
    """`read()`, repeated while it meets a file that its writer has not finished."""
    for _ in range(TORN_READ_RETRIES):
        try:
            return read()
        except json.JSONDecodeError:
            time.sleep(TORN_READ_PAUSE_S)
    return read()


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        """Write the message under a name `_get` ignores, then rename it into place at once."""
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + PARTIAL_SUFFIX
        try:
            with open(partial, "wb") as message:
                message.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as error:
            raise ChannelError(f"Cannot add {final!r} to the queue folder") from error

    def get_table(self, exchange: str) -> list:
        return _again_while_torn(lambda: super(Channel, self).get_table(exchange))

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        _again_while_torn(
            lambda: super(Channel, self)._queue_bind(exchange, routing_key, pattern, queue)
        )


class Transport(filesystem.Transport):
    Channel = Channel
