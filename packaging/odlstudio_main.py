"""Entry script of the frozen app (PyInstaller needs a script, not a console_scripts entry point).

Same behaviour as the ``odlstudio`` command: no sub-command starts the desktop app.
"""

from __future__ import annotations

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # harmless when nothing spawns processes; required if anything does
    from app.cli import main

    sys.exit(main())
