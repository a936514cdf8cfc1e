"""Live plot of a :class:`~app.core.streams.SampleStream` (pull model, min/max decimation).

:meth:`StreamPlot.tick` is called by the frame clock.  It asks the stream for at most two points per
pixel column over the visible x range (:meth:`SampleStream.view`), so a frame costs the same with 10 s
or 1 h of history, and it returns at once when neither the stream version nor the view changed.

* **Follow live** (default): the x range is the last ``window_s`` seconds and scrolls ("roll mode").
  Any manual zoom/pan switches it off; :meth:`set_follow` (or the toolbar toggle) switches it back.
* Zooming and panning work while streaming (wheel, drag; right-drag zooms per axis).
* Gaps (lost samples, reconnects) are NaN in the data (lines break) and shaded.
* y autoscale with hysteresis: grows at once, shrinks only when the data use < 50 % of the range.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal

from app.core.streams import SampleStream

__all__ = ["StreamPlot", "CHANNEL_COLORS"]

CHANNEL_COLORS = ("#e6550d", "#31a354", "#3182bd", "#756bb1")
#: Major and minor grid lines, pre-blended on the dark background (opaque lines paint fastest).
GRID_COLORS = ("#3b3e45", "#23262c")


def _tick_levels(axis: pg.AxisItem, lo: float, hi: float, px: float) -> list[np.ndarray]:
    """Major and minor tick positions the axis would label over ``[lo, hi]`` on ``px`` pixels."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo or px < 2:
        return [np.empty(0), np.empty(0)]
    levels = [np.asarray(v, np.float64) for _, v in axis.tickValues(lo, hi, px)[:2]]
    levels += [np.empty(0)] * (2 - len(levels))
    if len(levels[0]):  # minor lines only where there is no major one
        levels[1] = levels[1][~np.isin(np.round(levels[1], 12), np.round(levels[0], 12))]
    return levels


class StreamPlot(pg.PlotWidget):
    """A PlotWidget that pulls a stream.  ``source()`` returns the stream to show (may change or be None).

    ``scale`` multiplies the values (e.g. 1e3 for mA); ``channels`` selects which channels to draw.
    """

    followChanged = Signal(bool)

    def __init__(
        self,
        source: Callable[[], SampleStream | None],
        *,
        window_s: float = 10.0,
        scale: float = 1.0,
        units: str = "",
        label: str = "",
        channels: Sequence[int] | None = None,
        colors: Sequence[str] = CHANNEL_COLORS,
        names: Sequence[str] | None = None,
        parent=None,
        view_box: pg.ViewBox | None = None,
    ):
        super().__init__(parent=parent, viewBox=view_box) if view_box is not None else super().__init__(parent=parent)
        self.source = source
        self.window_s = float(window_s)
        self.scale = float(scale)
        self.follow = True
        self.auto_y = True
        self._channels = list(channels) if channels is not None else None
        self._colors = list(colors)
        self._names = list(names) if names else None
        self._curves: list[pg.PlotDataItem] = []
        self._gap_items: list[pg.LinearRegionItem] = []
        self._expired: pg.LinearRegionItem | None = None  # time older than the stream's history (see tick)
        self._expired_label: pg.InfLineLabel | None = None
        self._last_key: tuple | None = None
        self._shown = False  # the curves hold a source's data
        self._setting_range = False
        self.frames = 0  # frames actually painted (setData calls), for tests and the fps overlay
        self.last_view_points = 0
        pi = self.getPlotItem()
        # Grid: two opaque line-pair curves (major, minor) behind the data instead of pyqtgraph's axis
        # grid, whose alpha-blended lines replayed from a QPicture took ~10 ms of every software-rastered
        # 1600x900 frame (benchmarks/gui_frames.py); these cost < 1 ms and follow the axis ticks.
        self._grid = [pg.PlotCurveItem(pen=pg.mkPen(c, width=1), connect="pairs", antialias=False) for c in GRID_COLORS]
        for z, item in enumerate(self._grid):
            item.setZValue(-100 - z)
            pi.getViewBox().addItem(item, ignoreBounds=True)  # not a data curve: no legend, no downsampling
        pi.getViewBox().sigRangeChanged.connect(self._update_grid)
        pi.getViewBox().sigResized.connect(self._update_grid)
        pi.setLabel("bottom", "time", units="s")
        if label:
            pi.setLabel("left", label, units=units)
        pi.setMenuEnabled(False)
        pi.hideButtons()
        pi.setClipToView(False)  # we decimate ourselves
        pi.setDownsampling(auto=False)
        self._legend = pi.addLegend(offset=(-10, 5)) if self._names else None
        vb = pi.getViewBox()
        vb.disableAutoRange()
        vb.setMouseEnabled(x=True, y=True)
        vb.sigRangeChangedManually.connect(self._manual)
        self.setXRange(-self.window_s, 0, padding=0)

    # --- control ---------------------------------------------------------------------------------
    def set_follow(self, on: bool) -> None:
        if on != self.follow:
            self.follow = on
            self._last_key = None
            self.followChanged.emit(on)

    def set_window(self, seconds: float) -> None:
        self.window_s = max(1e-3, float(seconds))
        self._last_key = None

    def set_scale(self, scale: float, label: str | None = None, units: str | None = None) -> None:
        self.scale = float(scale)
        if label is not None:
            self.getPlotItem().setLabel("left", label, units=units or "")
        self._last_key = None
        self.auto_y = True

    def _manual(self, *args) -> None:
        if not self._setting_range:
            self.set_follow(False)
            if args and isinstance(args[0], (list, tuple)) and len(args[0]) > 1 and args[0][1]:
                self.auto_y = False

    def _update_grid(self, *_args) -> None:
        pi = self.getPlotItem()
        vb = pi.getViewBox()
        (x0, x1), (y0, y1) = vb.viewRange()
        xs = _tick_levels(pi.getAxis("bottom"), x0, x1, vb.width())
        ys = _tick_levels(pi.getAxis("left"), y0, y1, vb.height())
        for item, xv, yv in zip(self._grid, xs, ys):
            x = np.concatenate([np.repeat(xv, 2), np.tile([x0, x1], len(yv))])
            y = np.concatenate([np.tile([y0, y1], len(xv)), np.repeat(yv, 2)])
            item.setData(x, y)

    def visible_range(self) -> tuple[float, float]:
        (x0, x1), _ = self.getPlotItem().getViewBox().viewRange()
        return float(x0), float(x1)

    def _ensure_curves(self, n: int) -> None:
        while len(self._curves) < n:
            i = len(self._curves)
            pen = pg.mkPen(self._colors[i % len(self._colors)], width=1)
            name = self._names[i] if self._names and i < len(self._names) else None
            item = pg.PlotDataItem(pen=pen, name=name, connect="finite", antialias=False)
            item.setDownsampling(auto=False)
            item.setClipToView(False)
            self.addItem(item)
            self._curves.append(item)

    # --- frame clock -----------------------------------------------------------------------------
    def tick(self) -> bool:
        """Pull and redraw if something changed; returns True if the curves were updated."""
        s = self.source()
        if s is None:
            if not self._shown:
                return False
            # the source went away (the Labelling panel's last recording deleted, or one whose file cannot be
            # read): its curves are cleared, not left on screen as if they were the data now selected
            self._shown, self._last_key, self.last_view_points = False, None, 0
            for item in self._curves:
                item.setData([], [])
            for gap in [*self._gap_items, self._expired]:
                if gap is not None:
                    gap.hide()
            return True
        vb = self.getPlotItem().getViewBox()
        if self.follow:
            t1 = s.duration if s.duration >= self.window_s else self.window_s
            self._setting_range = True
            try:
                vb.setXRange(t1 - self.window_s, t1, padding=0, update=False)
            finally:
                self._setting_range = False
        x0, x1 = self.visible_range()
        width = max(50, int(vb.width()) or 800)
        key = (id(s), s.version, round(x0, 9), round(x1, 9), width, self.scale)
        if key == self._last_key:
            return False
        self._last_key = key
        v = s.view(x0, x1, width)
        chans = self._channels if self._channels is not None else list(range(s.channels))
        self._ensure_curves(len(chans))
        self.last_view_points = len(v.x)
        lo, hi = math.inf, -math.inf
        for item, ch in zip(self._curves, chans):
            y = v.y[:, ch] * self.scale if len(v.x) else np.empty(0)
            item.setData(v.x, y, connect="finite")
            if len(y):
                finite = y[np.isfinite(y)]
                if len(finite):
                    lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        self._update_gaps(s, x0, x1)
        self._update_expired(s, x0)
        self._shown = True
        if self.auto_y and math.isfinite(lo):
            self._autoscale_y(lo, hi)
        self.frames += 1
        return True

    def _autoscale_y(self, lo: float, hi: float) -> None:
        vb = self.getPlotItem().getViewBox()
        (_, _), (y0, y1) = vb.viewRange()
        span = max(hi - lo, abs(hi) * 1e-3, 1e-12)
        grow = lo < y0 or hi > y1
        shrink = (hi - lo) < 0.5 * (y1 - y0)
        if grow or shrink:
            pad = 0.1 * span
            self._setting_range = True
            try:
                vb.setYRange(lo - pad, hi + pad, padding=0, update=False)
            finally:
                self._setting_range = False

    def _update_expired(self, s: SampleStream, x0: float) -> None:
        """Time older than the stream's history (its samples left it: the live accelerometer keeps an hour) is
        shaded grey and said, not shown as empty time without a word."""
        t = s.first_time
        if t <= 0 or x0 >= t:
            if self._expired is not None:
                self._expired.hide()
            return
        if self._expired is None or self._expired_label is None:
            self._expired = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(128, 128, 128, 50), pen=pg.mkPen(None))
            self._expired.setZValue(-10)
            self._expired_label = pg.InfLineLabel(self._expired.lines[1], "", position=0.92, anchors=[(1, 0), (1, 0)])
            self.addItem(self._expired)
        hist = s.history_s
        text = (
            f"not kept: older than the last {hist:g} s"
            if hist < 60
            else f"not kept: older than the last {hist / 60:g} min"
        )
        if self._expired_label.format != text:
            self._expired_label.setFormat(text)
        self._expired.setRegion((min(x0, t), t))
        self._expired.show()

    def _update_gaps(self, s: SampleStream, x0: float, x1: float) -> None:
        gaps = [(a, b) for a, b in s.gaps if b > x0 and a < x1][-20:]
        while len(self._gap_items) < len(gaps):
            item = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(200, 60, 60, 40), pen=pg.mkPen(None))
            item.setZValue(-10)
            self.addItem(item)
            self._gap_items.append(item)
        for i, item in enumerate(self._gap_items):
            if i < len(gaps):
                item.setRegion(gaps[i])
                item.show()
            else:
                item.hide()


def time_frame(fn: Callable[[], object]) -> float:
    """Milliseconds taken by ``fn()`` (used by the fps overlay and the benchmark)."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3
