"""Sub-commands of the ``odlstudio`` console command.

Each module named in :data:`COMMANDS` defines ``register(subparsers)`` which adds its parser and sets
``func=run`` (``run(args) -> int``).  Modules must keep heavy imports (TensorFlow, Qt, h5py) inside
``run`` so that ``odlstudio --help`` and start-up stay fast.
"""

COMMANDS = (
    "gui",
    "bench",
    "power",
    "estimate",
    "pretrain",
    "personalize",
    "flash",
    "loso",
    "accuracy_prior",
    "sweep",
    "make_assets",
    "smoke",
    "repair",
)
