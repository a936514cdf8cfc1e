"""A combo box whose tool tip names the current item in full: on a narrow form the box elides it ("General
(paper CNN, W"), and a round's summary ends in the figures a user picks it by."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QComboBox


def tip_current_item(combo: QComboBox, about: str) -> Callable[..., None]:
    """Set ``combo``'s tool tip to its current item's text, then ``about``, now and whenever the item changes;
    returns the update, for a caller that refills the box with its signals blocked."""

    def show(_: int = 0) -> None:
        text = combo.currentText()
        combo.setToolTip(f"{text}\n\n{about}" if text else about)

    combo.currentIndexChanged.connect(show)
    show()
    return show
