"""tests/bench/testimages.py — the photo-like test images of the
renditions and memory sections of `make bench`, made with the vips CLI.

Smooth colour noise: three independent Gaussian noise bands at 1/blur of
the size, scaled up (Lanczos), so the image has the fine detail and poor
compressibility of a photograph rather than the flat areas of a synthetic
gradient. Images are made once and kept under BENCH_OUT/images/ (the
name says size, format and options, so a change of recipe makes a new
file): the same bytes from one run to the next make the runs comparable.
"""

import os
import subprocess

IMAGES = os.path.join(os.environ.get("BENCH_OUT", "build/bench"), "images")
RECIPE = 2  # bump when make() changes what it writes


def make(width, height, ext, options="", blur=2):
    """The path of a width x height photo-like image saved as `ext` ("png",
    "jpg", "webp") with vips save options ("Q=90", "filter=all": PNG
    encoders other than libvips filter adaptively), made if missing. The
    larger `blur`, the smoother: 4 gives about 2.1 bytes per pixel as PNG,
    0.4 as WebP Q90 and 0.7 as JPEG Q90, 6 about 0.5 as JPEG Q90."""
    os.makedirs(IMAGES, exist_ok=True)
    tag = options.replace("=", "").replace(",", "-")
    name = f"noise-r{RECIPE}-{width}x{height}-b{blur}{'-' + tag if tag else ''}.{ext}"
    path = os.path.join(IMAGES, name)
    if os.path.exists(path):
        return path
    tmp = path + ".tmp"
    sw, sh = -(-width // blur), -(-height // blur)
    bands = []
    for b in range(3):
        f = f"{tmp}.n{b}.v"
        subprocess.run(["vips", "gaussnoise", f, str(sw), str(sh), "--sigma", "60",
                        "--mean", "128"], check=True)
        subprocess.run(["vips", "cast", f, f + "8.v", "uchar"], check=True)
        bands.append(f + "8.v")
    subprocess.run(["vips", "bandjoin", " ".join(bands), tmp + ".rgb.v"], check=True)
    subprocess.run(["vips", "copy", tmp + ".rgb.v", tmp + ".srgb.v",
                    "--interpretation", "srgb"], check=True)
    # Scale up past the size, then cut it exactly.
    subprocess.run(["vips", "resize", tmp + ".srgb.v", tmp + ".big.v", str(blur)], check=True)
    out = f"{tmp}.{ext}" + (f"[{options}]" if options else "")
    subprocess.run(["vips", "crop", tmp + ".big.v", out, "0", "0", str(width), str(height)],
                   check=True)
    os.rename(f"{tmp}.{ext}", path)
    for f in os.listdir(IMAGES):
        if f.startswith(os.path.basename(tmp) + ".") and f.endswith(".v"):
            os.unlink(os.path.join(IMAGES, f))
    return path


def size_of(path):
    """(width, height) of an image file, from vipsheader."""
    out = subprocess.run(["vipsheader", "-f", "width", path], capture_output=True, text=True,
                         check=True).stdout
    w = int(out.strip())
    out = subprocess.run(["vipsheader", "-f", "height", path], capture_output=True, text=True,
                         check=True).stdout
    return w, int(out.strip())
