#!/usr/bin/env python3
"""Draws Kotodama's icon set (PNG + ICO) with the standard library only.

The design: a rounded square with an indigo-to-rose gradient, a white speech bubble, and three
sound bars inside it ("words, spoken"). Shapes are described in unit coordinates and rendered with
4x4 supersampling, so every size is drawn from the geometry, not scaled from another bitmap.
Run from anywhere: `python3 icons/generate.py`; it rewrites the files next to itself.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = (0x4B, 0x2F, 0xC0)     # indigo
BOTTOM = (0xE4, 0x48, 0x7A)  # rose
BAR = (0x5E, 0x33, 0xB4)     # the bars take a deep violet from the gradient


def inside_rounded_rect(x, y, x0, y0, x1, y1, r):
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    return x0 <= x <= x1 and y0 <= y <= y1 and (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def inside_triangle(x, y, a, b, c):
    def side(p, q):
        return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])
    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return (s1 >= 0 and s2 >= 0 and s3 >= 0) or (s1 <= 0 and s2 <= 0 and s3 <= 0)


def sample(x, y):
    """RGBA (0-255, straight alpha) of the design at unit point (x, y)."""
    if not inside_rounded_rect(x, y, 0.04, 0.04, 0.96, 0.96, 0.21):
        return (0, 0, 0, 0)
    t = (y - 0.04) / 0.92
    base = tuple(round(TOP[i] + (BOTTOM[i] - TOP[i]) * t) for i in range(3))
    bubble = ((x - 0.5) / 0.33) ** 2 + ((y - 0.45) / 0.27) ** 2 <= 1.0 or inside_triangle(
        x, y, (0.29, 0.60), (0.45, 0.68), (0.22, 0.83))
    if not bubble:
        return base + (255,)
    for cx, half in ((0.37, 0.075), (0.50, 0.15), (0.63, 0.10)):
        if inside_rounded_rect(x, y, cx - 0.037, 0.45 - half, cx + 0.037, 0.45 + half, 0.037):
            return BAR + (255,)
    return (255, 255, 255, 255)


def render(size, ss=4):
    rows = []
    for py in range(size):
        row = bytearray()
        for px in range(size):
            acc = [0, 0, 0, 0]
            for sy in range(ss):
                for sx in range(ss):
                    r, g, b, a = sample((px + (sx + 0.5) / ss) / size, (py + (sy + 0.5) / ss) / size)
                    acc[0] += r * a
                    acc[1] += g * a
                    acc[2] += b * a
                    acc[3] += a
            alpha = acc[3]
            n = ss * ss
            if alpha == 0:
                row += b"\0\0\0\0"
            else:
                row += bytes((round(acc[0] / alpha), round(acc[1] / alpha), round(acc[2] / alpha),
                              round(alpha / n)))
        rows.append(bytes(row))
    return rows


def png(rows):
    size = len(rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def ico(pngs):
    """An ICO whose entries are PNGs (valid since Windows Vista; what Tauri's bundler expects)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = 6 + 16 * len(pngs)
    entries, blobs = b"", b""
    for size, data in pngs:
        dim = 0 if size >= 256 else size
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
        blobs += data
    return header + entries + blobs


def main():
    made = {}
    for name, size in (("32x32.png", 32), ("128x128.png", 128), ("256x256.png", 256),
                       ("icon.png", 512)):
        data = png(render(size, ss=4 if size <= 256 else 3))
        made[size] = data
        with open(os.path.join(HERE, name), "wb") as out:
            out.write(data)
        print(f"icons/{name}: {size}x{size}, {len(data)} bytes")
    with open(os.path.join(HERE, "icon.ico"), "wb") as out:
        out.write(ico([(32, made[32]), (128, made[128]), (256, made[256])]))
    print("icons/icon.ico: 32, 128, 256")


if __name__ == "__main__":
    main()
