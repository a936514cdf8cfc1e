"""A toolbar row that wraps: :class:`FlowLayout` lays its widgets left to right and starts a new row when the
next one does not fit (Qt's "Flow Layout" example).  A ``QHBoxLayout`` of a dozen buttons, combo boxes and
labels asked for 760-1020 px, so the Labelling, Power, Devices and Live panels could not be used on an
800 x 600 screen; in a FlowLayout the row is as narrow as its widest widget and grows a row instead
(height-for-width, which the main window's per-panel scroll area honours)."""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QWidget

__all__ = ["FlowLayout"]


class FlowLayout(QLayout):
    """Widgets in rows, wrapped at the layout's width; each row's items are centred vertically.  Widgets
    only (``addWidget``): there is no stretch, the rows are left-aligned."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6, row_spacing: int = 4):
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._h = spacing
        self._v = row_spacing
        self.setContentsMargins(0, 0, 0, 0)

    # --- QLayout -----------------------------------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt naming
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._do_layout(QRect(0, 0, width, 0), test_only=True)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._do_layout(rect, test_only=False)

    def sizeHint(self) -> QSize:  # noqa: N802 - one row: as wide as all the items
        w, h = 0, 0
        for it in self._visible():
            s = it.sizeHint()
            w += s.width() + (self._h if w else 0)
            h = max(h, s.height())
        m = self.contentsMargins()
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 - as wide as the widest item
        size = QSize()
        for it in self._visible():
            size = size.expandedTo(it.minimumSize())
        m: QMargins = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    # --- layout ------------------------------------------------------------------------------------
    def _visible(self) -> list[QLayoutItem]:
        return [it for it in self._items if not it.isEmpty()]

    def _rows(self, width: int) -> list[list[tuple[QLayoutItem, QSize]]]:
        rows: list[list[tuple[QLayoutItem, QSize]]] = [[]]
        x = 0
        for it in self._visible():
            s = it.sizeHint().boundedTo(it.maximumSize()).expandedTo(it.minimumSize())
            s = QSize(min(s.width(), max(width, 1)), s.height())
            if rows[-1] and x + self._h + s.width() > width:
                rows.append([])
                x = 0
            x += (self._h if rows[-1] else 0) + s.width()
            rows[-1].append((it, s))
        return rows

    def _do_layout(self, rect: QRect, test_only: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        y = area.y()
        rows = [r for r in self._rows(area.width()) if r]
        for i, row in enumerate(rows):
            height = max(s.height() for _it, s in row)
            x = area.x()
            for it, s in row:
                if not test_only:
                    it.setGeometry(QRect(QPoint(x, y + (height - s.height()) // 2), s))
                x += s.width() + self._h
            y += height + (self._v if i < len(rows) - 1 else 0)
        return y - rect.y() + m.bottom()
