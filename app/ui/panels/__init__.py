"""Panel registry: how panels join the main window.

A panel is a module in this package that defines ``PANEL = PanelSpec(...)``.  The main window imports
the modules named in :data:`PANEL_MODULES` (missing ones are skipped, so a panel can be added by creating
its module) plus anything registered at run time with :func:`register_panel` (plugins, tests), sorts
them by ``order`` and shows each as a page with a sidebar entry and a ``Ctrl+<n>`` shortcut.

Writing a panel::

    # app/ui/panels/training.py
    from app.ui.panels import PanelSpec
    from app.ui.panels.base import Panel

    class TrainingPanel(Panel):
        def __init__(self, ctx, parent=None):
            super().__init__(ctx, parent)      # self.ctx: app.core.context.AppContext
            ...
        def tick(self) -> None: ...            # frame clock (<= 60 Hz), only while the panel is visible
        def shortcuts(self) -> list[tuple[str, str]]:   # for Help > Keyboard shortcuts
            return [("Ctrl+R", "Run a round")]

    PANEL = PanelSpec(key="training", title="Training round", order=40, factory=TrainingPanel,
                      icon="SP_MediaPlay", tooltip="Run a personalization round on the board")
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    from PySide6.QtWidgets import QWidget

    from app.core.context import AppContext
    from app.ui.panels.base import Panel

__all__ = ["PanelSpec", "register_panel", "panel_specs", "PANEL_MODULES"]

log = logging.getLogger(__name__)

#: Panel modules in this package, imported by the main window (a missing module is skipped).
PANEL_MODULES = ("devices", "live_accel", "labelling", "power", "training", "estimator", "export")


@dataclass(frozen=True)
class PanelSpec:
    """How to build and show one panel.

    ``key``: unique id (also the ``--panel`` name and the screenshot file name); ``order``: sidebar
    position (devices 10, live accel 20, labelling 30, training 40, power 50, estimator 60, export 70);
    ``factory(ctx, parent) -> Panel``; ``icon``: a ``QStyle.StandardPixmap`` name.
    """

    key: str
    title: str
    order: int
    factory: Callable[["AppContext", "QWidget | None"], "Panel"]
    icon: str = "SP_FileIcon"
    tooltip: str = ""


_registry: dict[str, PanelSpec] = {}


def register_panel(spec: PanelSpec) -> PanelSpec:
    """Add (or replace, same key) a panel; call before the main window is built."""
    _registry[spec.key] = spec
    return spec


def panel_specs() -> list[PanelSpec]:
    """All panels: the modules of :data:`PANEL_MODULES` that exist plus registered ones, by ``order``."""
    specs = dict(_registry)
    for name in PANEL_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        spec = getattr(mod, "PANEL", None)
        if spec is None:
            log.warning("panel module %s defines no PANEL", name)
            continue
        specs.setdefault(spec.key, spec)
    return sorted(specs.values(), key=lambda s: (s.order, s.key))
