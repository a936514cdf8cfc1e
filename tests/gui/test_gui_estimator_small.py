"""The Estimator panel on an 800 x 600 screen (offscreen, no devices).  Was: its two charts sat side by side in
the ~280 px left beside the form, so the second chart (energy per batch) was beyond the right edge and the
first one's title and x axis were cut; the table's ten columns were squeezed into the same width, so every
cell read "…"."""

from __future__ import annotations

import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtWidgets import QApplication

from tests.gui.test_gui_labelling import offline_window  # noqa: F401 - the fixture

pytestmark = pytest.mark.gui


def _inside(panel) -> list[tuple[str, bool]]:
    """Each chart's title and whether the chart lies wholly within the charts' view."""
    view = panel.charts.viewport().rect()
    out = []
    for plot in (panel.mem_plot, panel.energy_plot):
        r = panel.charts.mapFromScene(plot.sceneBoundingRect()).boundingRect()
        out.append((plot.titleLabel.text, view.contains(r)))
    return out


def test_the_estimator_charts_and_table_are_whole_on_an_800x600_screen(offline_window):  # noqa: F811
    win = offline_window
    panel = win.show_panel("estimator")
    win.resize(800, 600)
    QApplication.processEvents()
    assert panel.charts.width() < 2 * panel.charts.CHART_WIDTH  # the case: too narrow for two side by side
    assert _inside(panel) == [("Training memory", True), ("Energy per batch", True)]
    assert panel.charts.side_by_side() is False
    assert panel.charts.height() >= 2 * panel.charts.CHART_HEIGHT
    assert panel.energy_plot.legend.columnCount == 1
    page = win.stack.currentWidget()
    assert not page.horizontalScrollBar().isVisible()
    table = panel.table
    assert table.rowCount() > 0
    for c in range(table.columnCount()):  # every column as wide as its header and cells: no "…"
        need = max(table.sizeHintForColumn(c), table.horizontalHeader().sectionSizeHint(c))
        assert table.columnWidth(c) >= need, (table.horizontalHeaderItem(c).text(), table.columnWidth(c), need)
    assert table.horizontalScrollBar().maximum() > 0  # the rest is a scroll away
    assert table.height() >= 120

    win.resize(1280, 800)  # a laptop screen: side by side again, the columns share the whole width
    QApplication.processEvents()
    assert panel.charts.side_by_side() is True
    assert _inside(panel) == [("Training memory", True), ("Energy per batch", True)]
    assert panel.energy_plot.legend.columnCount == 2
    assert sum(table.columnWidth(c) for c in range(table.columnCount())) == table.viewport().width()
    assert table.horizontalScrollBar().maximum() == 0
