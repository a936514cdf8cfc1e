"""Labelling panel without devices: WISDM import through the labelling path (datasets.load_wisdm parses, the
skipped lines are shown to the user) and the class-balance view with full class names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import pytestqt  # noqa: E402, F401 - required (test extra): a broken install fails, never skips

from tests.datakit import V11_QUIRKS

pytestmark = pytest.mark.gui


@pytest.fixture()
def labelling(qtbot, tmp_path):
    from app.core.context import AppContext
    from app.ui.app import build_window

    ctx = AppContext.create(tmp_path / "db", bench=False, discover=False)
    win = build_window(ctx)
    qtbot.addWidget(win)
    win.resize(1300, 800)
    win.show()
    yield win.show_panel("labelling")
    win.close()
    ctx.close()


def test_import_with_quirks_shows_skipped_lines(labelling, qtbot, tmp_path):
    panel, ctx = labelling, labelling.ctx
    src = tmp_path / "WISDM_ar_v1.1_raw.txt"
    src.write_text(V11_QUIRKS)
    panel.import_wisdm(str(src))
    qtbot.waitUntil(lambda: panel.import_result is not None, timeout=20_000)
    assert panel.rec_list.count() == 1 and panel.recording.name == "WISDM 33"
    assert [l.label for l in ctx.store.labels(panel.recording.id)] == ["Jogging", "Walking"]
    text = panel.import_report.toPlainText()
    assert panel.import_report.isVisible()
    assert "5 lines skipped:\nline 64: x, y or z is not a finite number" in text
    assert "line 119: truncated: last record has no terminating ';'" in text
    assert "dancing (1 sample)" in text  # not a class of the dataset: said, not silently dropped
    # the balance view counts the imported windows and names every class in full
    panel.tick()
    assert panel.balance_totals["Jogging"] == 62 // panel.win_size.value()
    ticks = [t for _, t in panel.balance.getAxis("left")._tickLevels[0]]  # noqa: SLF001
    assert ticks == list(panel.classes) and "Downstairs" in ticks
    shots = os.environ.get("ODL_SCREENSHOTS")
    if shots:
        qtbot.wait(200)
        panel.window().grab().save(str(Path(shots) / "labelling_import.png"))


def test_import_of_a_file_with_nothing_valid_is_reported(labelling, qtbot, tmp_path):
    panel = labelling
    src = tmp_path / "junk.txt"
    src.write_text("not,a,wisdm\nfile\n")
    panel.import_wisdm(str(src))
    qtbot.waitUntil(lambda: "failed" in panel.import_report.toPlainText(), timeout=20_000)
    text = panel.import_report.toPlainText()
    assert (
        f"{src}: no valid WISDM records (2 skipped; the first: {src}:1: expected 6 comma-separated fields, found 3: "
        "'not,a,wisdm'); WISDM text is a data_<id>_accel_phone.txt" in text
    )
    assert panel.rec_list.count() == 0
