"""The Estimator panel on an 800 x 600 screen (offscreen, no devices).  Was: its two charts sat side by side in
the ~280 px left beside the form, so the second chart (energy per batch) was beyond the right edge and the
first one's title and x axis were cut; the table's ten columns were squeezed into the same width, so every
cell read "…"."""

from __future__ import annotations

import pytest
import pytestqt  # noqa: F401 - required (test extra): a broken install fails, never skips
from PySide6.QtCore import QPointF
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


def test_the_memory_legend_covers_no_point_on_an_800x600_screen(offline_window):  # noqa: F811
    """Stacked 210-px charts: the memory chart's two-row legend ("TL (+ reserve)", "FULL (+ reserve)") lay over
    the TL and FULL points of T = 40…100; now one row "TL FULL" (the axis says "KiB, reserve included")."""
    win = offline_window
    panel = win.show_panel("estimator")
    win.resize(800, 600)
    QApplication.processEvents()
    assert panel.charts.side_by_side() is False
    legend = panel.mem_plot.legend
    assert legend.columnCount == 2 and [label.text for _sample, label in legend.items] == ["TL", "FULL"]
    assert panel.mem_plot.getAxis("left").labelText == "KiB, reserve included"
    box = legend.sceneBoundingRect()
    for item in panel.mem_plot.listDataItems():
        for x, y in zip(*item.getData(), strict=True):
            pt = item.mapToScene(QPointF(float(x), float(y)))
            assert not box.adjusted(-6, -6, 6, 6).contains(pt), (item.name(), x, y)


def test_the_table_title_is_whole_on_an_800x600_screen(offline_window):  # noqa: F811
    """The title above the table wraps to four lines at 800 px; it got three lines' height, so "(green:
    recommended; grey: outside a budget; click a row to pick it)" ended under the table."""
    win = offline_window
    panel = win.show_panel("estimator")
    win.resize(800, 600)
    QApplication.processEvents()
    QApplication.processEvents()
    title = panel.table_title
    assert title.text().endswith("(green: recommended; grey: outside a budget; click a row to pick it)")
    assert title.heightForWidth(title.width()) > 3 * title.fontMetrics().lineSpacing()  # the case: it wraps
    assert title.height() >= title.heightForWidth(title.width())
    assert title.geometry().bottom() < panel.table.geometry().top()
