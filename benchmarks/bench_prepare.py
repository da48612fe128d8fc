"""Image preparation: the issue-12 baseline steps beside `prepare_image`, in one run.

Run: python benchmarks/bench_prepare.py [--repeat 7] [--max-side 1024]

"old" is what issue 12 measured as today's preparation, the steps of the copy before
the lean decode (commit 21c538e): the input hashed, a full decode, `exif_transpose` (a
full-size copy even without an orientation tag), `convert("RGB")` (another, even of an
RGB image), LANCZOS from full resolution, and the same JPEG encoding. "new" is
`viewfinder.prepare.prepare_image` as it is in this checkout: a JPEG decoded at 1/2,
1/4 or 1/8 scale (`Image.draft`) to no less than 1.5x the copy, no copy that changes
nothing, LANCZOS from the decoded size. The two run interleaved, image by image, and
the figure that matters is the ratio (the machine is shared; absolute times are noisy).

Images, made in the run: the 12-megapixel noise JPEG of `bench_overhead.py` (8 MB: the
worst case for the entropy decoding, which no scaling skips), a 12-megapixel page of
small text as a JPEG (3 MB, nearer a phone photo's size) and, for contrast, the same
page as a PNG (no reduced-scale decode exists for PNG). The "new" rows are split into
where its time goes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import statistics
import time
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont, ImageOps

from viewfinder.prepare import decode, prepare_image
from viewfinder.prepare.decode import DEFAULT_LIMITS, model_copy, open_checked

_JPEG_OPTIONS = {"quality": 90, "subsampling": 0, "optimize": False, "progressive": False}
_WORDS = "invoice total amount paid receipt number date quick brown fox jumps over the lazy dog"


def noise_jpeg() -> bytes:
    """The 12-megapixel JPEG of `bench_overhead.py`: Gaussian noise, quality 90."""
    buffer = io.BytesIO()
    Image.effect_noise((4000, 3000), 48).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def text_page(size: tuple[int, int] = (4000, 3000), font_size: int = 40) -> Image.Image:
    """A page of small black text on white: 40 px letters, 10 px in a 1024 copy."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=font_size)
    words = _WORDS.split()
    rng = random.Random(12)
    for y in range(font_size, size[1] - font_size, font_size * 3 // 2):
        line = " ".join(rng.choice(words) for _ in range(size[0] // (font_size * 4)))
        draw.text((font_size, y), line, fill="black", font=font)
    return page


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def old_prepare(data: bytes, max_side: int) -> bytes:
    """The issue's baseline: full decode, transpose, convert, LANCZOS from full size."""
    hashlib.sha256(data).hexdigest()
    image = Image.open(io.BytesIO(data))
    image.load()
    shown = ImageOps.exif_transpose(image).convert("RGB")
    scale = max_side / max(shown.size)
    if scale < 1:
        size = (max(1, round(shown.width * scale)), max(1, round(shown.height * scale)))
        shown = shown.resize(size, Image.Resampling.LANCZOS)
    shown.info = {}
    return encoded(shown, "JPEG", **_JPEG_OPTIONS)


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _steps(data: bytes, max_side: int) -> dict[str, float]:
    """Seconds of each step of the new path, one run."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    image = open_checked(data, "bench", DEFAULT_LIMITS)
    times["hash + header"] = time.perf_counter() - start
    start = time.perf_counter()
    with decode._decoding("bench"):
        decode._draft(image, decode._fit(image.size, max_side))
        image.load()
    times["decode"] = time.perf_counter() - start
    decoded_size = image.size
    image = open_checked(data, "bench", DEFAULT_LIMITS)
    start = time.perf_counter()
    _, copy = model_copy(image, max_side, "bench")
    times["resize"] = time.perf_counter() - start - times["decode"]  # model_copy decodes too
    start = time.perf_counter()
    encoded(copy, "JPEG", **_JPEG_OPTIONS)
    times["encode"] = time.perf_counter() - start
    times[f"(decoded at {decoded_size[0]}x{decoded_size[1]})"] = 0.0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--max-side", type=int, default=1024)
    args = parser.parse_args()
    page = text_page()
    images = [
        ("12 MP JPEG, noise (as bench_overhead)", noise_jpeg()),
        ("12 MP JPEG, small text", encoded(page, "JPEG", quality=90)),
        ("12 MP PNG, small text", encoded(page, "PNG", compress_level=6)),
    ]
    print(
        f"command: python benchmarks/bench_prepare.py --repeat {args.repeat} "
        f"--max-side {args.max_side}"
    )
    print(f"median of {args.repeat}, old and new interleaved; copy max side {args.max_side}")
    print(f"  {'image':40s} {'MB':>5s} {'old ms':>8s} {'new ms':>8s}  new/old")
    for name, data in images:
        old_prepare(data, args.max_side)  # warm up both
        prepare_image(data, max_side=args.max_side)
        old, new = [], []
        for _ in range(args.repeat):
            old.append(_timed(lambda d=data: old_prepare(d, args.max_side)))
            new.append(_timed(lambda d=data: prepare_image(d, max_side=args.max_side)))
        old_ms, new_ms = statistics.median(old) * 1000, statistics.median(new) * 1000
        print(
            f"  {name:40s} {len(data) / 1e6:5.1f} {old_ms:8.1f} {new_ms:8.1f}"
            f"  {new_ms / old_ms:5.2f}x"
        )
        steps = [_steps(data, args.max_side) for _ in range(args.repeat)]
        parts = ", ".join(
            f"{key} {statistics.median(s[key] for s in steps) * 1000:.1f} ms"
            if not key.startswith("(")
            else key
            for key in steps[0]
        )
        print(f"    new, by step: {parts}")


if __name__ == "__main__":
    main()
