"""NUCLEO-L496ZG + X-NUCLEO-IKS01A3 board: wire protocol v1 (``protocol``, ``cobs``, ``crc``), host
client (``client``), LSM6DSO emulation (``sensor``) and the emulated board (``emulator``, imported on
demand: it pulls in the training engine).  See docs/protocol.md."""

from .client import DeviceTransport, IntegrityError, NucleoClient, NucleoError, NucleoTimeout, RoundResult
from .protocol import MAX_PAYLOAD, PROTOCOL_VERSION, USB_PID, USB_VID, ErrorCode, MsgType, ProtocolError

__all__ = [
    "DeviceTransport",
    "IntegrityError",
    "NucleoClient",
    "NucleoError",
    "NucleoTimeout",
    "RoundResult",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "USB_PID",
    "USB_VID",
    "ErrorCode",
    "MsgType",
    "ProtocolError",
]
