"""Which files a `submit` sends, under which names, and what a bad path says."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.paths import PathError, Upload, expand_paths


def test_folder_gives_its_images_and_zips_named_relative_to_it(image_folder: Path) -> None:
    uploads = expand_paths([image_folder])

    assert [u.name for u in uploads] == ["a.png", "c.zip", "more/b.JPG"]
    assert all(u.path.is_file() for u in uploads)


def test_named_file_is_sent_whatever_its_extension(image_folder: Path) -> None:
    notes = image_folder / "notes.txt"

    assert expand_paths([notes]) == [Upload(notes, "notes.txt")]


def test_hidden_files_and_folders_are_skipped(image_folder: Path) -> None:
    (image_folder / ".thumbs").mkdir()
    (image_folder / ".thumbs" / "x.png").write_bytes(b"x")
    (image_folder / ".y.png").write_bytes(b"y")

    assert [u.name for u in expand_paths([image_folder])] == ["a.png", "c.zip", "more/b.JPG"]


def test_a_file_named_twice_is_sent_once(image_folder: Path) -> None:
    uploads = expand_paths([image_folder / "a.png", image_folder, image_folder / "a.png"])

    assert [u.name for u in uploads] == ["a.png", "c.zip", "more/b.JPG"]


def test_expanded_uploads_pass_through_unchanged(image_folder: Path) -> None:
    uploads = expand_paths([image_folder])

    assert expand_paths(uploads) == uploads


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(PathError, match="no such file or folder: .*nowhere"):
        expand_paths([tmp_path / "nowhere"])


def test_folder_without_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no images here")

    with pytest.raises(PathError, match="no image or zip files in"):
        expand_paths([tmp_path])
