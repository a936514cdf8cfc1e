"""``odlstudio flash``: put the ODL firmware on a NUCLEO-L496ZG and check it answers.

Examples::

    odlstudio flash                           # the firmware this app ships, the only NUCLEO plugged in
    odlstudio flash --port /dev/ttyACM1       # that board (its ST-LINK is found by USB serial number)
    odlstudio flash --firmware build/odl.bin --method mass-storage --drive /media/me/NODE_L496ZG
    odlstudio flash --list                    # what would be used: image, tools, drives, ports

How: ``st-flash``, ``STM32_Programmer_CLI`` or ``pyocd`` when installed, else the ST-LINK's USB drive
NODE_L496ZG (copy the .bin, wait for it to re-enumerate); the one used is printed.  Then the board must
answer HELLO with the flashed version on its virtual COM port (``--no-verify`` skips that).

Output: progress on stderr, one summary line (or with ``--json`` one JSON object) on stdout.
Exit status: 0 flashed and answering, 1 flashing or the check failed (the message says what to check),
2 bad arguments or nothing to flash with.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    p = subparsers.add_parser(
        "flash",
        help="flash the ODL firmware onto a NUCLEO-L496ZG and check it answers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", help="the board's virtual COM port (default: the only NUCLEO enumerated)")
    p.add_argument("--firmware", metavar="FILE", help="an ODL .bin image (default: the one this app ships)")
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "st-flash", "stm32cubeprogrammer", "pyocd", "mass-storage"),
        help="how to flash (default auto: the first tool found, else the ST-LINK drive)",
    )
    p.add_argument("--drive", metavar="PATH", help="the ST-LINK drive's mount point, if not found automatically")
    p.add_argument("--no-verify", action="store_true", help="do not wait for the board's HELLO afterwards")
    p.add_argument("--force", action="store_true", help="flash a --firmware file that is not an ODL image")
    p.add_argument("--list", action="store_true", help="show the image, methods and ports that would be used")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)


def _listing(args: argparse.Namespace) -> dict:
    from app.core import flashing
    from device.nucleo import fwimage

    out: dict = {"expected_version": fwimage.version_text(fwimage.FIRMWARE_VERSION)}
    try:
        img = flashing.resolve_image(args.firmware, force=args.force)
        out["firmware"] = {"path": str(img.path), "version": img.version_text, "target": img.target, "bytes": img.size}
    except flashing.FlashError as exc:
        out["firmware"] = None
        out["firmware_error"] = str(exc)
    out["methods"] = [{"method": m.kind, "target": m.target} for m in flashing.find_methods(args.drive)]
    try:
        from device import discovery

        out["ports"] = [{"port": p.device, "serial": p.serial_number} for p in discovery.find_nucleo()]
    except Exception as exc:  # noqa: BLE001 - a broken port lister is reported, not fatal
        out["ports"] = []
        out["ports_error"] = str(exc)
    return out


def run(args: argparse.Namespace) -> int:
    from app.core import flashing

    if args.list:
        info = _listing(args)
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            fw = info["firmware"]
            print(f"expected firmware: {info['expected_version']}")
            print(
                f"image:   {fw['path']} ({fw['version']}, {fw['bytes']:,} bytes)"
                if fw
                else f"image:   none ({info['firmware_error']})"
            )
            for m in info["methods"] or [{"method": "none found", "target": ""}]:
                print(f"method:  {m['method']} {m['target']}".rstrip())
            for p in info["ports"] or [{"port": "no NUCLEO (0483:374B) enumerated", "serial": None}]:
                print(f"port:    {p['port']}" + (f" (serial {p['serial']})" if p["serial"] else ""))
        return 0 if info["firmware"] else 2

    last = [-1.0]

    def progress(fraction: float, text: str = "") -> None:
        if fraction - last[0] >= 0.05 or fraction >= 1.0 or fraction < last[0]:
            last[0] = fraction
            print(f"odlstudio flash: {100 * fraction:3.0f}% {text}", file=sys.stderr, flush=True)

    try:
        report = flashing.flash(
            args.firmware,
            method=args.method,
            port=args.port,
            drive=args.drive,
            verify=not args.no_verify,
            force=args.force,
            progress=progress,
        )
    except flashing.FlashError as exc:
        msg = str(exc)
        code = 2 if isinstance(exc, flashing.FlashSetupError) else 1
        if args.json:
            print(json.dumps({"ok": False, "error": msg}), flush=True)
        print(f"odlstudio flash: {msg}", file=sys.stderr, flush=True)
        return code
    if args.json:
        print(json.dumps(report.as_dict()), flush=True)
    else:
        for kind, err in report.failed_methods:
            print(f"odlstudio flash: {kind} did not work first: {err}", file=sys.stderr)
        print(report.summary(), flush=True)
    return 0
