"""Qt views (PySide6 + pyqtgraph) over the Qt-free core in :mod:`app.core`.

* :mod:`app.ui.main_window` — the main window shell: panel sidebar, device menu, status bar, frame clock.
* :mod:`app.ui.panels` — the panel registry and one module per panel (see ``PANEL_MODULES``).
* :mod:`app.ui.widgets` — shared widgets (the live stream plot).
* :mod:`app.ui.tasks` — long work on a thread pool with progress and cancel.

Importing this package must stay cheap: TensorFlow is never imported here (tests check it).
"""
