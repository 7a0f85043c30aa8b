#!/usr/bin/env python3
"""Draws the mediator app's icons (icon-192.png, icon-512.png) beside this file.

Standard library only (zlib, struct), so anyone can redraw them: a beacon (a dot
inside two arcs) in amber on the night-shift background, full bleed so Android
may mask it to any shape. Run: python3 web/mediator/icons/make-icons.py
"""

import math
import struct
import zlib
from pathlib import Path

BACKGROUND = (0x10, 0x18, 0x26)
MARK = (0xF5, 0xB0, 0x41)
SUPERSAMPLE = 4


def coverage(x: float, y: float, size: int) -> float:
    """How much of the mark covers the point, 0 or 1 (antialiased by supersampling)."""
    c = size / 2
    dx, dy = x - c, y - c
    r = math.hypot(dx, dy) / size
    if r < 0.085:
        return 1.0
    # Two rings, open at the bottom (a signal spreading out), inside the
    # maskable safe zone (radius 0.4).
    angle = math.degrees(math.atan2(dy, dx))  # 90 is straight down
    if 40 < angle < 140:
        return 0.0
    for inner, outer in ((0.17, 0.225), (0.285, 0.34)):
        if inner <= r <= outer:
            return 1.0
    return 0.0


def draw(size: int) -> bytes:
    rows = []
    step = 1 / SUPERSAMPLE
    for py in range(size):
        row = bytearray([0])  # filter type: none
        for px in range(size):
            hits = 0.0
            for sy in range(SUPERSAMPLE):
                for sx in range(SUPERSAMPLE):
                    hits += coverage(px + (sx + 0.5) * step, py + (sy + 0.5) * step, size)
            a = hits / (SUPERSAMPLE * SUPERSAMPLE)
            row.extend(round(b + (m - b) * a) for b, m in zip(BACKGROUND, MARK))
        rows.append(bytes(row))
    return b"".join(rows)


def png(size: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(draw(size), 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    for size in (192, 512):
        (here / f"icon-{size}.png").write_bytes(png(size))
        print(f"wrote {here / f'icon-{size}.png'}")
