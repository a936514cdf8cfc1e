"""Draw the ODL Studio icon and write it as SVG, PNG, ICO (Windows) and ICNS (macOS).

The icon is a microcontroller (the STM32 the models are personalized on) carrying an accelerometer trace,
on a dark rounded square matching the app's plot background.  One list of shapes on a 256 x 256 canvas
feeds both writers: the SVG is written as text, the bitmaps are painted with QPainter (PySide6-Essentials
has no QtSvg renderer we could rely on), and ICO/ICNS embed PNG images (both formats allow it).

    .venv/bin/python packaging/make_icon.py          # writes assets/icons/odlstudio.{svg,png,ico,icns}

The outputs are committed; re-run this only when the drawing changes.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANVAS = 256

BACKGROUND = "#161b26"
PIN = "#8b98a9"
BODY = "#243042"
OUTLINE = "#2dd4bf"
TRACE = "#fbbf24"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    radius: float
    fill: str
    stroke: str = ""
    stroke_width: float = 0.0


@dataclass(frozen=True)
class Line:
    points: tuple[tuple[float, float], ...]
    stroke: str
    width: float


@dataclass(frozen=True)
class Dot:
    cx: float
    cy: float
    r: float
    fill: str


def shapes() -> list[Rect | Line | Dot]:
    """The drawing, back to front, in canvas units."""
    out: list[Rect | Line | Dot] = [Rect(8, 8, 240, 240, 52, BACKGROUND)]
    body0, body1 = 60.0, 196.0
    pin_len, pin_w = 22.0, 10.0
    for i in range(5):  # five pins on each side of the chip
        c = body0 + 20 + i * 24 - pin_w / 2
        out += [
            Rect(c, body0 - pin_len, pin_w, pin_len + 4, 3, PIN),
            Rect(c, body1 - 4, pin_w, pin_len + 4, 3, PIN),
            Rect(body0 - pin_len, c, pin_len + 4, pin_w, 3, PIN),
            Rect(body1 - 4, c, pin_len + 4, pin_w, 3, PIN),
        ]
    out.append(Rect(body0, body0, body1 - body0, body1 - body0, 16, BODY, OUTLINE, 6))
    out.append(Dot(84, 84, 7, OUTLINE))
    # An accelerometer burst: flat, a few strides, flat again.
    ys = (0, 0, -14, 30, -38, 22, -26, 34, -18, 8, 0, 0)
    x0, x1, ymid = 74.0, 182.0, 136.0
    step = (x1 - x0) / (len(ys) - 1)
    out.append(Line(tuple((x0 + i * step, ymid + y) for i, y in enumerate(ys)), TRACE, 9))
    return out


# ------------------------------------------------------------------------------------------------
# SVG
# ------------------------------------------------------------------------------------------------


def svg_text() -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CANVAS}" height="{CANVAS}" viewBox="0 0 {CANVAS} {CANVAS}">',
        "  <title>ODL Studio</title>",
    ]
    for s in shapes():
        if isinstance(s, Rect):
            stroke = f' stroke="{s.stroke}" stroke-width="{s.stroke_width:g}"' if s.stroke else ""
            parts.append(
                f'  <rect x="{s.x:g}" y="{s.y:g}" width="{s.w:g}" height="{s.h:g}" rx="{s.radius:g}" '
                f'fill="{s.fill}"{stroke}/>'
            )
        elif isinstance(s, Dot):
            parts.append(f'  <circle cx="{s.cx:g}" cy="{s.cy:g}" r="{s.r:g}" fill="{s.fill}"/>')
        else:
            pts = " ".join(f"{x:g},{y:g}" for x, y in s.points)
            parts.append(
                f'  <polyline points="{pts}" fill="none" stroke="{s.stroke}" stroke-width="{s.width:g}" '
                'stroke-linecap="round" stroke-linejoin="round"/>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------------------
# bitmaps (QPainter)
# ------------------------------------------------------------------------------------------------


def png_bytes(size: int) -> bytes:
    """The icon as a ``size`` x ``size`` PNG (transparent outside the rounded square)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPointF, QRectF, Qt
    from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen, QPolygonF

    img = QImage(size, size, QImage.Format_ARGB32_Premultiplied)
    img.fill(Qt.transparent)
    p = QPainter(img)
    p.setRenderHint(QPainter.Antialiasing, True)
    p.scale(size / CANVAS, size / CANVAS)
    for s in shapes():
        if isinstance(s, Rect):
            p.setBrush(QBrush(QColor(s.fill)))
            if s.stroke:
                p.setPen(QPen(QColor(s.stroke), s.stroke_width))
            else:
                p.setPen(Qt.NoPen)
            p.drawRoundedRect(QRectF(s.x, s.y, s.w, s.h), s.radius, s.radius)
        elif isinstance(s, Dot):
            p.setPen(Qt.NoPen)
            p.setBrush(QBrush(QColor(s.fill)))
            p.drawEllipse(QPointF(s.cx, s.cy), s.r, s.r)
        else:
            pen = QPen(QColor(s.stroke), s.width)
            pen.setCapStyle(Qt.RoundCap)
            pen.setJoinStyle(Qt.RoundJoin)
            p.setPen(pen)
            p.setBrush(Qt.NoBrush)
            p.drawPolyline(QPolygonF([QPointF(x, y) for x, y in s.points]))
    p.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.WriteOnly)
    if not img.save(buf, "PNG"):
        raise RuntimeError(f"Qt could not encode a {size}px PNG")
    buf.close()
    return bytes(data)


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico whose images are PNGs (allowed since Windows Vista)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for s in sizes:
        data = pngs[s]
        dim = 0 if s >= 256 else s  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
        blobs += data
    return header + entries + blobs


#: ICNS element types that hold PNG data, by pixel size.
ICNS_TYPES = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09"}


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns with PNG elements (macOS 10.7+)."""
    body = b"".join(
        ICNS_TYPES[s] + struct.pack(">I", 8 + len(pngs[s])) + pngs[s] for s in sorted(pngs) if s in ICNS_TYPES
    )
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "assets" / "icons"), help="output folder (default assets/icons)")
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts/painting need it
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {s: png_bytes(s) for s in (16, 32, 48, 64, 128, 256, 512)}
    (out / "odlstudio.svg").write_text(svg_text(), encoding="utf-8")
    (out / "odlstudio.png").write_bytes(pngs[256])
    (out / "odlstudio.ico").write_bytes(ico_bytes({s: pngs[s] for s in (16, 32, 48, 256)}))
    (out / "odlstudio.icns").write_bytes(icns_bytes({s: pngs[s] for s in (16, 32, 64, 128, 256, 512)}))
    for name in ("odlstudio.svg", "odlstudio.png", "odlstudio.ico", "odlstudio.icns"):
        print(f"{out / name}  {(out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
