"""The installed `hwr` command against the real stack: EMNIST images in, every result out.

`base_url` is the gateway served over HTTP with a worker behind it (the shared stack fixture).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ml.data import load_split

HWR = Path(sys.executable).with_name("hwr")
IMAGE_COUNT = 12
WAIT_S = 120


@pytest.fixture
def emnist_folder(emnist_dir: Path, tmp_path: Path) -> Path:
    """The first test images of pool47 as upright PNGs, named by their index."""
    split = load_split(emnist_dir, "pool47", "test")
    for index, pixels in enumerate(split.images[:IMAGE_COUNT]):
        Image.fromarray(pixels).save(tmp_path / f"{index:02d}.png")
    return tmp_path


def test_submit_folder_prints_a_result_for_every_image(base_url: str, emnist_folder: Path) -> None:
    command = [HWR, "--url", base_url, "submit", emnist_folder, "--wait", "--json"]

    done = subprocess.run(
        [*command, "--timeout", str(WAIT_S)], capture_output=True, text=True, timeout=WAIT_S + 30
    )

    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    items = job["results"]["items"]
    assert job["status"] == "succeeded"
    assert [item["filename"] for item in items] == [f"{i:02d}.png" for i in range(IMAGE_COUNT)]
    assert all(item["status"] == "succeeded" and item["prediction"] for item in items)
    assert all(0.0 <= item["confidence"] <= 1.0 for item in items)
