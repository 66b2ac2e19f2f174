"""The request size limit holds while the body streams in, not after it has all been read.

A raw socket shows what a client sees: the 413 arrives while it is still sending, long before the
body it announced has gone out, and a declared oversize length is refused before any body.
"""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlsplit

from jobs.settings import Settings

CHUNK = 64 * 1024
# The body the client means to send, in multiples of the limit; it must be stopped far sooner.
OVERSIZE = 10
# Pause between chunks: a slow uploader, so the gateway reads along as the body arrives.
PAUSE_S = 0.002
BOUNDARY = "hostile"


def connect(gateway_url: str) -> socket.socket:
    address = urlsplit(gateway_url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def request_head(length_header: str) -> bytes:
    return (
        "POST /api/v1/jobs HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{length_header}\r\n\r\n"
    ).encode()


def status_of(connection: socket.socket) -> int:
    """The status code of the response that has started to arrive."""
    head = connection.recv(4096)
    assert head.startswith(b"HTTP/1.1 "), head
    return int(head.split()[1])


def test_a_slow_oversize_body_is_answered_413_while_it_is_being_sent(
    gateway_url: str, settings: Settings
):
    limit = settings.max_request_bytes
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
    ).encode()
    with connect(gateway_url) as connection:
        connection.sendall(request_head("Transfer-Encoding: chunked"))
        connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sent, answered = len(part), False
        while sent < OVERSIZE * limit and not answered:
            connection.sendall(b"%x\r\n%s\r\n" % (CHUNK, bytes(CHUNK)))
            sent += CHUNK
            answered = bool(select.select([connection], [], [], PAUSE_S)[0])
        assert answered, f"no answer after sending {sent:,} bytes, {OVERSIZE}x the limit"
        assert status_of(connection) == 413
    # The gateway read a little past the limit; the rest is what sockets buffer on the way.
    assert limit < sent < OVERSIZE * limit / 2, sent


def test_a_declared_oversize_length_is_answered_413_before_any_body(
    gateway_url: str, settings: Settings
):
    with connect(gateway_url) as connection:
        started = time.monotonic()
        connection.sendall(request_head(f"Content-Length: {OVERSIZE * settings.max_request_bytes}"))
        assert status_of(connection) == 413
        assert time.monotonic() - started < 10
