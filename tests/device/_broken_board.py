"""A board emulator module whose own import fails (tests/device/test_bench_exact.py): the bench must say so."""

import a_module_that_does_not_exist_anywhere  # noqa: F401
