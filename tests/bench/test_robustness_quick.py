"""Keeps the robustness benchmark from rotting: one image per class, two styles, the real model.

Nothing here checks an accuracy target; only that every figure is there and a probability.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.robustness import main


def test_writes_every_reference_and_every_style(emnist_dir: Path, tmp_path: Path) -> None:
    styles = ["as_is", "pen_canvas", "draw_page"]
    main(["--limit", "47", "--styles", *styles, "--out", str(tmp_path)])
    results = json.loads((tmp_path / "robustness_emnist47.json").read_text())
    assert results["images"] == 47
    figures = [results[key] for key in ("clean", "pen_lines_no_preprocessing", "pen_lines_framed")]
    figures += [results["styles"][name] for name in styles]
    assert all(0 < row["macro_accuracy"] <= 1 for row in figures)
    pen_lines = {name: results["styles"][name]["pen_lines"] for name in styles}
    # Every 1-3 px line is read with the pen-line calibration, most of the draw page's even
    # strokes too, few of EMNIST's own.
    assert pen_lines["pen_canvas"] == 47
    assert pen_lines["draw_page"] > 47 / 2 > 47 / 4 > pen_lines["as_is"]
    canvas = results["styles"]["pen_canvas"]
    assert 0 < canvas["macro_accuracy_without_pen_line_calibration"] <= 1
    for row in figures[1:]:
        lost = row["turned_wrong"]
        assert sum(lost["confusions"].values()) == lost["images"]
        assert 0 <= lost["other_case"] <= lost["images"]
    table = (tmp_path / "robustness_emnist47.md").read_text()
    assert "| pen lines as training draws them (no preprocessing) |" in table
    assert "| the same pen lines, framed by preprocessing |" in table
    assert "| pen_canvas |" in table and "| draw_page |" in table


def test_renders_each_model_s_own_split(emnist_dir: Path, tmp_path: Path) -> None:
    main(["--model", "emnist62", "--limit", "62", "--styles", "as_is", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "robustness_emnist62.json").read_text())
    assert results["split"] == "pool62 test"
    assert results["images"] == 62
    assert 0 < results["styles"]["as_is"]["macro_accuracy"] <= 1
