"""Byte-noise faults shared by the device fault matrices (tests/test_faults_*.py): name -> switch settings
of a :class:`device.emulated.ByteFaults`."""

from __future__ import annotations

BYTE_FAULTS: dict[str, dict[str, float | int]] = {
    "corrupt_1e-4": {"corrupt_rate": 1e-4},
    "corrupt_1e-2": {"corrupt_rate": 1e-2},
    "drop_1e-3": {"drop_rate": 1e-3},
    "nul_bursts": {"nul_burst_rate": 1e-3, "nul_burst_len": 16},
}


def apply_byte_fault(faults, name: str) -> bool:
    """Set the switches of byte fault ``name`` on ``faults``; False if ``name`` is not a byte fault."""
    settings = BYTE_FAULTS.get(name)
    for key, value in (settings or {}).items():
        setattr(faults, key, value)
    return settings is not None
