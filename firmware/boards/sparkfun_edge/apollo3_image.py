"""Apollo3 secure-bootloader image blobs, built in pure Python.

Two wrappers sit between the linker's raw `.bin` and the board (as AmbiqSuite SDK 2.4.2's
create_cust_image_blob.py and create_cust_wireupdate_blob.py make them):

* the **OTA image** ("customer image", non-secure magic 0xCB): a 128-byte header (size, CRC-32,
  security word, load address 0xC000, version) followed by the application padded to 4 bytes;
* the **wired-update blob**: the OTA image cut into blocks of at most `split` bytes, each behind a
  96-byte header (image type 6, options, flash program key, staging address 0x20000 + k*split, size).

With security off both are fully deterministic and byte-identical to what Ambiq's
`create_cust_image_blob.py` / `create_cust_wireupdate_blob.py` write; tests pin that with sha256
digests of synthetic inputs.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

FLASH_PAGE_SIZE = 0x2000
APP_LOAD_ADDRESS = 0xC000          # where the bootloader installs and starts a non-secure app
WIRE_LOAD_ADDRESS = 0x20000        # where the wired blob is staged before the OTA install
DEFAULT_SPLIT = 0x48000            # payload bytes per wired block (must fit the SBL's SRAM buffer)

SRAM_START = 0x10000000
SRAM_SIZE = 384 * 1024

OTA_MAGIC_NONSECURE = 0xCB
OTA_DESCRIPTOR_ADDRESS = 0xFE000   # last flash page: the bootloader's OTA descriptor
OTA_HEADER_SIZE = 128              # header size of 0xCB/0xCC/0xC1/0xCF images
WIRE_HEADER_SIZE = 96

IMAGE_TYPE_MAIN = 3
IMAGE_TYPE_NONSECURE = 6
IMAGE_TYPE_INFO0_NOOTA = 32
OPTION_OTA = 0x1                   # "schedule an OTA install of this image once downloaded"

FLASH_PROGRAM_KEY = 0x12344321     # the HAL's flash program key; the SBL wants it in every block
INFO_PROGRAM_KEY = 0xD894E09E      # the INFO0 key, used only by INFO0_NOOTA blobs

DEFAULT_KEY_INDEX = 8              # key-table index the scripts default to even with security off

# A wired update stages the OTA image (header + app) at WIRE_LOAD_ADDRESS, below the OTA descriptor
# page, so that is the largest application the bootloader can install (909,184 bytes).
MAX_APP_SIZE = OTA_DESCRIPTOR_ADDRESS - WIRE_LOAD_ADDRESS - OTA_HEADER_SIZE

_BLOB_SIZE_MASK = 0xFFFFF          # w0 bits 19..0 hold the blob size


def crc32(data: bytes) -> int:
    """Ethernet/zlib CRC-32, the checksum the Apollo3 bootloader uses everywhere."""
    return zlib.crc32(data) & 0xFFFFFFFF


def pad_to_4(data: bytes) -> bytes:
    """Pad to a multiple of 4; every pad byte holds the pad count (1 -> 01, 3 -> 03 03 03)."""
    count = -len(data) % 4
    return bytes(data) + bytes([count]) * count


# --------------------------------------------------------------------------------------------
# OTA image (magic 0xCB)
# --------------------------------------------------------------------------------------------

def _security_word(crc_install: bool = True, auth_key: int = DEFAULT_KEY_INDEX,
                   kek: int = DEFAULT_KEY_INDEX) -> int:
    # byte 3: (authI<<1 | crcI) << 4 | (authB<<1 | crcB); auth and boot checks stay off.
    security = (int(crc_install) << 4)
    return (security << 24) | ((kek & 0xF) << 12) | ((auth_key & 0xF) << 4)


def make_ota_image(app: bytes, *, load_address: int = APP_LOAD_ADDRESS,
                   magic: int = OTA_MAGIC_NONSECURE, version: int = 0) -> bytes:
    """Wrap a raw application binary into a non-secure OTA image (header + app padded to 4)."""
    if load_address % 4:
        raise ValueError(f"load address 0x{load_address:X} is not 4-byte aligned")
    if not 0 <= magic <= 0xFF:
        raise ValueError(f"magic 0x{magic:X} does not fit in a byte")
    body = pad_to_4(app)
    size = OTA_HEADER_SIZE + len(body)
    if size > _BLOB_SIZE_MASK:
        raise ValueError(f"image of {size} bytes does not fit the 20-bit size field (max 1 MiB)")

    header = bytearray(OTA_HEADER_SIZE)
    struct.pack_into("<I", header, 8, _security_word())
    # Words 3..27 (reserved word, HMACs, IV, wrapped key) stay zero when security is off.
    struct.pack_into("<IIII", header, 112, load_address, version & 0x7FFF, 0xFFFFFFFF, 0xFFFFFFFF)
    struct.pack_into("<I", header, 0, (magic << 24) | size)
    struct.pack_into("<I", header, 4, crc32(bytes(header[8:]) + body))
    return bytes(header) + body


@dataclass(frozen=True)
class OtaHeader:
    magic: int
    size: int
    crc: int
    security_word: int
    load_address: int
    version: int
    child0: int
    child1: int
    crc_ok: bool          # size field matches the image and the CRC-32 over bytes [8:size) matches

    @classmethod
    def parse(cls, image: bytes) -> "OtaHeader":
        if len(image) < OTA_HEADER_SIZE:
            raise ValueError(f"OTA image is {len(image)} bytes, shorter than its 128-byte header")
        w0, crc, security = struct.unpack_from("<III", image, 0)
        address, version, child0, child1 = struct.unpack_from("<IIII", image, 112)
        size = w0 & _BLOB_SIZE_MASK
        return cls(magic=w0 >> 24, size=size, crc=crc, security_word=security,
                   load_address=address & ~0x3, version=version & 0x7FFF, child0=child0,
                   child1=child1, crc_ok=size == len(image) and crc32(image[8:size]) == crc)


# --------------------------------------------------------------------------------------------
# Wired-update blob
# --------------------------------------------------------------------------------------------

def _wire_word0(auth_algo: int = 0, auth_key: int = DEFAULT_KEY_INDEX, enc_algo: int = 0,
                kek: int = DEFAULT_KEY_INDEX) -> int:
    return (auth_algo & 0xF) | ((auth_key & 0xF) << 8) | ((enc_algo & 0xF) << 16) | ((kek & 0xF) << 24)


def check_split(split: int) -> None:
    if split <= 0 or split % FLASH_PAGE_SIZE:
        raise ValueError(f"split 0x{split:X} must be a positive multiple of the 8 KiB flash page (0x2000)")


def make_wire_blob(image: bytes, *, load_address: int = WIRE_LOAD_ADDRESS,
                   image_type: int = IMAGE_TYPE_NONSECURE, options: int = OPTION_OTA,
                   split: int = DEFAULT_SPLIT) -> bytes:
    """Cut an (OTA) image into wired-update blocks, each with its own 96-byte header.

    Only the first block keeps `options` (the OTA flag): the bootloader must schedule the install
    once, for the image as a whole. Later blocks land `split` bytes further on in flash.
    """
    check_split(split)
    if not image:
        raise ValueError("cannot make a wired-update blob from an empty image")
    if load_address % 4:
        raise ValueError(f"load address 0x{load_address:X} is not 4-byte aligned")
    payload = pad_to_4(image)
    key = INFO_PROGRAM_KEY if image_type == IMAGE_TYPE_INFO0_NOOTA else FLASH_PROGRAM_KEY
    blocks = []
    for index, start in enumerate(range(0, len(payload), split)):
        chunk = payload[start:start + split]
        address = load_address + start
        if image_type == IMAGE_TYPE_INFO0_NOOTA:
            address >>= 2                     # INFO0 blobs address words, not bytes
        header = bytearray(WIRE_HEADER_SIZE)
        struct.pack_into("<I", header, 0, _wire_word0())
        header[80] = image_type
        header[81] = options if index == 0 else 0
        struct.pack_into("<III", header, 84, key, address, len(chunk))
        blocks.append(bytes(header) + chunk)
    return b"".join(blocks)


@dataclass(frozen=True)
class WireHeader:
    word0: int
    image_type: int
    options: int
    key: int
    address: int
    size: int

    @classmethod
    def parse(cls, block: bytes) -> "WireHeader":
        if len(block) < WIRE_HEADER_SIZE:
            raise ValueError(f"wired block is {len(block)} bytes, shorter than its 96-byte header")
        (word0,) = struct.unpack_from("<I", block, 0)
        key, address, size = struct.unpack_from("<III", block, 84)
        return cls(word0=word0, image_type=block[80], options=block[81], key=key,
                   address=address, size=size)


def split_wire_blob(blob: bytes, split: int = DEFAULT_SPLIT) -> list[bytes]:
    """The blocks of a wired blob as the host sends them (one UPDATE each), first block first.

    Each block's length is read from its own header, and must agree with `split`, so a blob made
    with another split is refused rather than cut at the wrong places.
    """
    check_split(split)
    blocks, offset = [], 0
    while offset < len(blob):
        header = WireHeader.parse(blob[offset:offset + WIRE_HEADER_SIZE])
        end = offset + WIRE_HEADER_SIZE + header.size
        last = end >= len(blob)
        if end > len(blob) or header.size > split or (not last and header.size != split):
            raise ValueError(f"wired blob block at offset 0x{offset:X} declares {header.size} bytes, "
                             f"which does not fit a blob of {len(blob)} bytes split at 0x{split:X}")
        blocks.append(blob[offset:end])
        offset = end
    if not blocks:
        raise ValueError("wired blob is empty")
    return blocks


# --------------------------------------------------------------------------------------------
# Sanity check of the input: is this a raw Cortex-M application linked for the bootloader?
# --------------------------------------------------------------------------------------------

def describe_app_problem(app: bytes, load_address: int = APP_LOAD_ADDRESS) -> str | None:
    """Return why `app` does not look like a raw Apollo3 app for `load_address`, or None if it does.

    Catches the usual mix-ups before a two-minute flash: the ELF (.axf) instead of the .bin, an
    already wrapped OTA/wired blob, or a binary linked for another address (e.g. 0x0 or SVL's
    0x10000). A raw app starts with its vector table: initial stack pointer in SRAM, then a Thumb
    reset handler inside the image.
    """
    if len(app) < 8:
        return f"file is only {len(app)} bytes, too small for a Cortex-M vector table"
    if len(app) > MAX_APP_SIZE:
        return (f"{len(app):,} bytes is more than the {MAX_APP_SIZE:,} the bootloader can install "
                f"(it stages the image at 0x{WIRE_LOAD_ADDRESS:X}, below its OTA descriptor at "
                f"0x{OTA_DESCRIPTOR_ADDRESS:X})")
    if app[:4] == b"\x7fELF":
        return "file is an ELF executable (.axf/.elf); pass the raw .bin made by objcopy -O binary"
    w0, w1 = struct.unpack_from("<II", app, 0)
    if w0 >> 24 == OTA_MAGIC_NONSECURE and (w0 & _BLOB_SIZE_MASK) == len(app):
        return "file is already an OTA image (magic 0xCB); pass the application .bin it was made from"
    wire_types = (IMAGE_TYPE_NONSECURE, IMAGE_TYPE_MAIN)
    if w0 == _wire_word0() and len(app) > WIRE_HEADER_SIZE and app[80] in wire_types:
        return "file is already a wired-update blob; pass the application .bin it was made from"
    if not SRAM_START < w0 <= SRAM_START + SRAM_SIZE:
        return (f"first word 0x{w0:08X} is not an initial stack pointer in SRAM "
                f"(0x{SRAM_START:08X}..0x{SRAM_START + SRAM_SIZE:08X}); not a raw Apollo3 application")
    if not (w1 & 1 and load_address <= (w1 & ~1) < load_address + len(app)):
        return (f"reset vector 0x{w1:08X} lies outside the image loaded at 0x{load_address:X}; "
                f"the binary is linked for another address (the bootloader starts apps at "
                f"0x{load_address:X})")
    return None
