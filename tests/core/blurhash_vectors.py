#!/usr/bin/python3
"""tests/core/blurhash_vectors.py - BlurHash test vectors from the reference
C encoder of github.com/woltapp/blurhash (C/encode.c), as Debian packages it
inside python3-blurhash (blurhash-python, which compiles that file with cffi).

    apt-get install python3-blurhash
    /usr/bin/python3 tests/core/blurhash_vectors.py   (Debian's python)

prints the rows of ref_vectors[] in tests/core/test_imagehash.c. Same vectors
and pixel patterns as tests/core/blurhash_vectors.js (integer arithmetic
only, so every language agrees byte for byte).
"""
from blurhash import _functions  # the cffi build of C/encode.c

VECTORS = [
    ('hgrad', 32, 24, 4, 3, 0),
    ('hgrad_rev', 32, 24, 4, 3, 0),
    ('noise', 32, 32, 4, 3, 1),
    ('noise', 17, 9, 9, 9, 42),
    ('solid', 8, 8, 4, 3, 0),
    ('solid', 8, 8, 1, 1, 0),
    ('stripes', 40, 20, 5, 4, 0),
    ('radial', 31, 31, 4, 3, 0),
    ('radial', 64, 48, 9, 9, 0),
    ('noise', 1, 1, 4, 3, 7),
    ('hgrad', 2, 2, 2, 2, 0),
    ('noise', 32, 24, 1, 9, 3),
    ('stripes', 3, 50, 9, 1, 0),
    ('radial', 20, 30, 4, 3, 0),
]


def pattern(name, w, h, seed):
    """RGB bytes, rows top to bottom; see pattern() in test_imagehash.c."""
    px = bytearray()
    s = seed & 0xFFFFFFFF
    for y in range(h):
        for x in range(w):
            if name in ('hgrad', 'hgrad_rev'):
                r = x * 255 // max(w - 1, 1)
                g = y * 255 // max(h - 1, 1)
                b = 64
                if name == 'hgrad_rev':
                    r, g, b = 255 - r, 255 - g, 192
            elif name == 'noise':
                c = []
                for _ in range(3):
                    s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
                    c.append(s >> 24)
                r, g, b = c
            elif name == 'solid':
                r, g, b = 200, 30, 90
            elif name == 'stripes':
                v = 230 if (x // 3) % 2 else 20
                r, g, b = v, 255 - v, (y * 7) % 256
            elif name == 'radial':
                dx, dy = 2 * x - (w - 1), 2 * y - (h - 1)
                d2 = dx * dx + dy * dy
                m = (w - 1) ** 2 + (h - 1) ** 2 + 1
                r, g, b = 255 - d2 * 255 // m, d2 * 255 // m, (x * y) % 256
            else:
                raise ValueError(name)
            px += bytes((r, g, b))
    return bytes(px)


def main():
    ffi, lib = _functions.ffi, _functions.lib
    for name, w, h, xc, yc, seed in VECTORS:
        rgb = ffi.new('uint8_t[]', pattern(name, w, h, seed))
        out = lib.create_hash_from_pixels(xc, yc, w, h, rgb, w * 3)
        print('\t{ "%s", %d, %d, %d, %d, %d, "%s" },'
              % (name, w, h, xc, yc, seed, ffi.string(out).decode()))


if __name__ == '__main__':
    main()
