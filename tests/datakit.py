"""Data that tests of several layers share: real lines of WISDM-2019 subjects from ../shared and a WISDM
v1.1 text with every quirk of the real file."""

from __future__ import annotations

from pathlib import Path

#: WISDM-2019 phone users of the tiny LOSO/sweep data set (the ``tiny_wisdm`` fixture of tests/core)
TINY_WISDM_SUBJECTS = ("1600", "1604", "1606")


def real_lines(shared_data: Path, subject: str, per_activity: int, codes: str = "ABCDE") -> list[str]:
    """The first ``per_activity`` real lines of each activity of a WISDM-2019 subject."""
    path = shared_data / "wisdm2019_phone_accel" / "raw" / "phone" / "accel" / f"data_{subject}_accel_phone.txt"
    out: dict[str, list[str]] = {c: [] for c in codes}
    with open(path, encoding="ascii") as fh:
        for line in fh:
            code = line.split(",", 2)[1]
            if code in out and len(out[code]) < per_activity:
                out[code].append(line.rstrip("\n"))
    return [l for c in codes for l in out[c]]


def synthetic_phone_file(folder: Path, subject: int = 1600, seed: int = 0) -> Path:
    """A WISDM-2019 phone file ``data_<subject>_accel_phone.txt``: 40 s at 20 Hz of each activity A-E (walking,
    jogging, stairs, sitting, standing), activity k a Gaussian around k m/s² on every axis."""
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    lines, t = [], 1_000_000_000
    for k, code in enumerate("ABCDE"):
        for _ in range(800):
            x, y, z = rng.normal(k, 1.0, 3)
            lines.append(f"{subject},{code},{t},{x:.4f},{y:.4f},{z:.4f};")
            t += 50_000_000
    return write(folder, f"data_{subject}_accel_phone.txt", lines)


def write(tmp_path: Path, name: str, lines: list[str], end: str = "\n") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + end, encoding="ascii")
    return p


#: WISDM v1.1 text with the quirks of the real file: two records on one line, spaces after commas, a blank
#: line, a missing value, a wrong field count, a timestamp-0 placeholder, a non-numeric value, an activity
#: that is not a class and a truncated last record (no ';').
V11_QUIRKS = (
    "".join(f"33,Jogging,{49105962326000 + 50_000_000 * i},{i * 0.1:.3f},9.5,0.5;\n" for i in range(60))
    + "33,Jogging,49108962326000,1.0,9.5,0.5;33,Jogging,49109012326000,1.1,9.4,0.4;\n"  # line 61: two records
    + "33, Walking, 49110062326000, 0.2, 9.8, 0.1;\n"  # line 62: spaces after commas
    + "\n"  # 63: blank
    + "33,Walking,49110112326000,,9.8,0.1;\n"  # 64: missing x
    + "33,Walking,49110162326000,0.2,9.8;\n"  # 65: 5 fields
    + "33,Walking,0,0,0,0;\n"  # 66: placeholder
    + "".join(f"33,Walking,{49110212326000 + 50_000_000 * i},0.3,9.7,x{i};\n" for i in range(1))  # 67: NaN-ish
    + "".join(f"33,Walking,{49110262326000 + 50_000_000 * i},0.3,9.7,0.2;\n" for i in range(50))  # 68..117
    + "33,Dancing,49112762326000,0.3,9.7,0.2;\n"  # 118: an activity the dataset does not have
    + "33,Walking,49112812326000,0.3,9.7,0.2"  # 119: truncated (no ';')
)
