"""The embedded broker never hands a reader a message or table its writer has not finished."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from kombu import Connection
from kombu.transport.virtual import Channel

from jobs.queue import FILESYSTEM_TRANSPORT

EXCHANGE_TABLE = [["cpu", "", "cpu"]]


@pytest.fixture
def channel(tmp_path: Path) -> Channel:
    (tmp_path / "control").mkdir()
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    connection = Connection(transport=FILESYSTEM_TRANSPORT, transport_options=options)
    return connection.default_channel


def test_a_message_being_written_is_invisible_and_a_written_one_arrives(
    channel: Channel, tmp_path: Path
) -> None:
    (tmp_path / "1_torn.cpu.msg.partial").write_bytes(b'{"bo')
    assert channel._size("cpu") == 0
    channel._put("cpu", {"body": "hello"})
    assert channel._size("cpu") == 1
    assert channel._get("cpu") == {"body": "hello"}
    assert [path.name for path in tmp_path.glob("*.msg")] == []


def test_a_table_read_while_its_writer_is_midway_is_read_again(
    channel: Channel, tmp_path: Path
) -> None:
    table = tmp_path / "control" / "celery.pidbox.exchange"
    table.write_text("")
    finish = threading.Timer(0.1, lambda: table.write_text(json.dumps(EXCHANGE_TABLE)))
    finish.start()
    assert [list(row) for row in channel.get_table("celery.pidbox")] == EXCHANGE_TABLE
    finish.join()
