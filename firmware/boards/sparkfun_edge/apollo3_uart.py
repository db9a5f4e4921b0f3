"""Message framing of the Apollo3 secure bootloader's wired-update protocol (both directions).

Every message is little-endian 32-bit words:

    word 0   CRC-32 of everything after it (header word + payload)
    word 1   (total length in bytes, CRC and header included) << 16 | message type
    ...      payload

The host sends HELLO, OTADESC, UPDATE, DATA, RESET (and ABORT); the bootloader answers HELLO with
STATUS and everything else with ACK. Sources: the Apollo3 Secure Update Flow document and
uart_wired_update.py (AmbiqSuite SDK 2.4.2, docs/secure_bootloader and tools/apollo3_scripts).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from vwwtorch.firmware.boards.sparkfun_edge.apollo3_image import crc32

MAX_MESSAGE_SIZE = 8192                    # the bootloader's receive buffer
HEADER_SIZE = 8                            # CRC word + length/type word
DATA_OVERHEAD = 12                         # header + sequence word
MAX_DATA_CHUNK = MAX_MESSAGE_SIZE - DATA_OVERHEAD   # 8180 bytes of image per DATA message
STATUS_LENGTH = 88
ACK_LENGTH = 20
OTA_DESCRIPTOR_ADDRESS = 0xFE000           # last 8 KiB page of the 1 MiB flash


class MsgType(enum.IntEnum):
    HELLO = 0
    STATUS = 1
    OTADESC = 2
    UPDATE = 3
    ABORT = 4
    RECOVER = 5
    RESET = 6
    ACK = 7
    DATA = 8


class AckStatus(enum.IntEnum):
    SUCCESS = 0
    FAILURE = 1
    INVALID_INFO0 = 2
    CRC = 3
    SEC = 4
    MSG_TOO_BIG = 5
    UNKNOWN_MSGTYPE = 6
    INVALID_ADDR = 7
    INVALID_OPERATION = 8
    INVALID_PARAM = 9
    SEQ = 10
    TOO_MUCH_DATA = 11


class ResetMode(enum.IntEnum):
    POI = 1      # software power-on-initialisation
    POR = 2      # software power-on reset


def type_name(value: int) -> str:
    try:
        return MsgType(value).name
    except ValueError:
        return f"0x{value:X}"


def status_name(value: int) -> str:
    try:
        return AckStatus(value).name
    except ValueError:
        return f"0x{value:X}"


def encode(msg_type: int, payload: bytes = b"") -> bytes:
    """One complete message: CRC word, length/type word, payload."""
    length = HEADER_SIZE + len(payload)
    if length > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {length} bytes exceeds the bootloader's {MAX_MESSAGE_SIZE}-byte buffer")
    body = struct.pack("<I", (length << 16) | msg_type) + payload
    return struct.pack("<I", crc32(body)) + body


def _words(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


# Host -> bootloader ---------------------------------------------------------------------------

def hello() -> bytes:
    return encode(MsgType.HELLO)


def ota_descriptor(address: int = OTA_DESCRIPTOR_ADDRESS) -> bytes:
    return encode(MsgType.OTADESC, _words(address))


def update(total: int, block_crc: int, valid: int = 0) -> bytes:
    """Announce a block of `total` bytes with CRC `block_crc`; its bytes follow in DATA messages."""
    return encode(MsgType.UPDATE, _words(total, block_crc, valid))


def data(seq: int, chunk: bytes) -> bytes:
    """`chunk` starts at byte offset `seq` of the current block."""
    return encode(MsgType.DATA, _words(seq) + chunk)


def reset(mode: int = ResetMode.POI) -> bytes:
    return encode(MsgType.RESET, _words(mode))


def abort(quit_: bool = False) -> bytes:
    return encode(MsgType.ABORT, _words(int(quit_)))


# Bootloader -> host (used by the test double, and documents what the host parses) -------------

def ack(src: int, status: int = AckStatus.SUCCESS, seq: int = 0) -> bytes:
    return encode(MsgType.ACK, _words(src, status, seq))


def status(version: int, max_image_size: int, status_: int, state: int,
           am_info: tuple[int, ...] = ()) -> bytes:
    info = tuple(am_info) + (0xFFFFFFFF,) * (16 - len(am_info))
    return encode(MsgType.STATUS, _words(version, max_image_size, status_, state, *info[:16]))


# Parsing --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    """A parsed message; `crc_ok` and `length_ok` say whether it is intact as received."""
    msg_type: int
    length: int
    crc: int
    payload: bytes
    crc_ok: bool
    length_ok: bool

    def word(self, index: int) -> int:
        """Payload word `index` (0 = the first word after the header)."""
        return struct.unpack_from("<I", self.payload, 4 * index)[0]

    @property
    def intact(self) -> bool:
        return self.crc_ok and self.length_ok


def split_header(header: bytes) -> tuple[int, int, int]:
    """(crc, length, type) of the first 8 bytes of a message."""
    crc, word = struct.unpack("<II", header[:HEADER_SIZE])
    return crc, word >> 16, word & 0xFFFF


def decode(raw: bytes) -> Message:
    """Parse a whole message as read off the wire (its own length field is checked, not trusted)."""
    if len(raw) < HEADER_SIZE:
        raise ValueError(f"message of {len(raw)} bytes is shorter than its 8-byte header")
    crc, length, msg_type = split_header(raw)
    return Message(msg_type=msg_type, length=length, crc=crc, payload=bytes(raw[HEADER_SIZE:]),
                   crc_ok=crc32(raw[4:]) == crc, length_ok=length == len(raw))


@dataclass(frozen=True)
class Status:
    version: int
    max_image_size: int
    status: int
    state: int
    am_info: tuple[int, ...]

    @classmethod
    def from_message(cls, msg: Message) -> "Status":
        words = struct.unpack_from("<20I", msg.payload.ljust(80, b"\0"))
        return cls(version=words[0], max_image_size=words[1], status=words[2], state=words[3],
                   am_info=tuple(words[4:]))


@dataclass(frozen=True)
class Ack:
    src: int
    status: int
    seq: int

    @classmethod
    def from_message(cls, msg: Message) -> "Ack":
        src, status_, seq = struct.unpack_from("<III", msg.payload.ljust(12, b"\0"))
        return cls(src=src, status=status_, seq=seq)
