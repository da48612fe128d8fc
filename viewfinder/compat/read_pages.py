"""Read 3.2's input documents: an image, a multi-page TIFF or a PDF, as one image a page.

References are to `azure-computer-vision-3.2.md`. Read takes "JPEG, PNG, BMP, PDF, TIFF;
PDF/TIFF up to 2000 pages; 50 x 50 - 10,000 x 10,000 px" (section 7, `READ_LIMITS`,
`MAX_PAGES`); `pages` selects pages of a PDF or TIFF (section 3). `open_document` checks
a body before the 202 (format, page count, each selected page's size), so a bad input is
a 400 with a Read error code (section 6.1), never a failed operation. Each selected page
then becomes one image file for viewfinder's `read` feature (`Document.page_image`, run
in a worker thread holding the page's pixels of the server's pixel budget):

- an image (and a one-page TIFF) is its own bytes, unchanged: the same model copy and
  answer-cache key as the 4.0 route's `features=read`;
- a page of a multi-page TIFF is that frame, as a PNG (lossless);
- a PDF page is rendered by PDFium (pypdfium2, the `server` extra) at `RENDER_DPI`,
  its long side at most `MAX_RENDER_SIDE` and its pixels at most the pixel budget, as a
  PNG. 150 DPI is the resolution the Read docs measure text against ("~8 pt at 150
  DPI" is the smallest text, section 7); the `read` feature's model copy is 1024 px on
  its long side, so a Letter page (1275 x 1650 at 150 DPI) is already more than the model
  sees, and 2048 px (twice the copy) bounds a poster-sized page without spending pixels
  the model never sees.

PDF coordinates: a PDF page reports `unit` "inch", its `width` and `height` in inches
(points / 72) and its boxes converted from the rendered pixels to inches (section 4),
rounded to 4 decimals. PDFium is not thread-safe: every call into it holds `_PDFIUM`.
"""

from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from viewfinder.compat.service import ServiceError
from viewfinder.errors import (
    DecompressionBombError,
    ImageError,
    ImageFormatError,
    ImageSizeError,
    import_failure,
)
from viewfinder.prepare.decode import (
    PIL_ERRORS,
    ImageLimits,
    decode_frame,
    decode_pixels,
    open_checked,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "MAX_PAGES",
    "MAX_RENDER_SIDE",
    "READ_LIMITS",
    "RENDER_DPI",
    "Document",
    "Page",
    "open_document",
]

READ_LIMITS: Final = ImageLimits(
    min_side=49,
    max_side=10_001,
    formats=frozenset({"JPEG", "MPO", "PNG", "BMP", "TIFF"}),
    max_pixels=10_000 * 10_000,
)
"""Read's images: JPEG (MPO is a camera's JPEG), PNG, BMP, TIFF; each side 50 to 10,000
pixels, both included (section 7)."""
MAX_PAGES: Final = 2000
"""Pages one operation reads at most ("PDF/TIFF up to 2000 pages", section 7)."""
RENDER_DPI: Final = 150
"""Resolution a PDF page is rendered at (see the module's docstring)."""
MAX_RENDER_SIDE: Final = 2048
"""Longest side of a rendered PDF page, in pixels: a larger page is rendered at less DPI."""

_PDF_MAGIC: Final = b"%PDF-"
_PNG_MODES: Final = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
_PDFIUM = threading.Lock()
"""PDFium is not thread-safe: one call into it at a time, process-wide."""


def _bad(code: str, message: str) -> ServiceError:
    """A 400 with one of the Read error codes (`ComputerVisionOcrError`, section 6.1)."""
    return ServiceError(400, code, message)


_UNSUPPORTED: Final = _bad("UnsupportedImageFormat", "The input image format is not supported.")
_INVALID: Final = _bad("InvalidImage", "The input data is not a valid image or password protected.")


@dataclass(frozen=True)
class Page:
    """One selected page of a document.

    Attributes:
        number: The page's number in the document, from 1.
        pixels: The pixels its image holds while it is made (0: the bytes are the input's
            own, decoded, and counted, by the analyzer).
        inches: A PDF page's (width, height) in inches; `None` for an image (pixels).
    """

    number: int
    pixels: int = 0
    inches: tuple[float, float] | None = None
    scale: float = 1.0
    """A PDF page's rendering scale (pixels per point)."""


class Document:
    """A checked Read input and its selected pages; `close` it when done (a PDF holds
    PDFium's parsed document)."""

    def __init__(
        self,
        kind: Literal["image", "tiff", "pdf"],
        data: bytes,
        page_count: int,
        pages: Sequence[Page],
        pdf: Any = None,
    ) -> None:
        self.kind = kind
        self.data = data
        self.page_count = page_count
        self.pages = tuple(pages)
        self._pdf = pdf

    def page_image(self, page: Page) -> bytes:
        """The image file of `page` (blocking: run it in a worker thread).

        Raises:
            ImageError: The page cannot be rendered or decoded.
        """
        if self.kind == "image":
            return self.data
        if self.kind == "tiff":
            return _tiff_frame(self.data, page.number)
        return self._render(page)

    def _render(self, page: Page) -> bytes:
        import pypdfium2 as pdfium

        with _PDFIUM:
            if self._pdf is None:
                raise ImageFormatError("the document is closed", source="pdf")
            try:
                handle = self._pdf[page.number - 1]
                try:
                    bitmap = handle.render(scale=page.scale)
                    try:
                        image = bitmap.to_pil().copy()  # detached from PDFium's buffer
                    finally:
                        bitmap.close()
                finally:
                    handle.close()
            except pdfium.PdfiumError as exc:
                raise ImageFormatError(f"page {page.number} cannot be rendered: {exc}") from None
        return _png(image)

    def close(self) -> None:
        """Release PDFium's document (nothing for an image or a TIFF)."""
        if self._pdf is not None:
            with _PDFIUM:
                self._pdf.close()
                self._pdf = None


def open_document(data: bytes, select: Callable[[int], Sequence[int]], max_pixels: int) -> Document:
    """Check `data` as Read does and pick its pages (blocking: run it in a worker thread).

    Args:
        data: The request's body (or the fetched URL's bytes).
        select: The page numbers to read of a document of so many pages (`ReadQuery.select`:
            it refuses a selection beyond the document with `InvalidPageRange`).
        max_pixels: The server's pixel budget: no PDF page is rendered larger.

    Raises:
        ServiceError: 400 `InvalidImage` (not an image or a PDF, corrupt, password
            protected), `UnsupportedImageFormat` (an image format Read does not take),
            `InvalidImageDimension` (a page's side outside 50-10,000 px),
            `InvalidPageRange` (from `select`, or more than `MAX_PAGES` pages selected).
    """
    if data.startswith(_PDF_MAGIC):
        return _open_pdf(data, select, max_pixels)
    try:
        image = open_checked(data, "image", READ_LIMITS)
    except (ImageSizeError, DecompressionBombError):
        raise _dimension() from None
    except ImageError:
        if decode_pixels(data, None) > 0:  # an image Pillow reads, of a format Read does not
            raise _UNSUPPORTED from None
        raise _INVALID from None
    with image:
        count = getattr(image, "n_frames", 1) if image.format == "TIFF" else 1
        numbers = _selected(select, count)
        if count == 1:
            return Document("image", data, 1, [Page(1)])
        pages = []
        for number in numbers:
            try:
                image.seek(number - 1)
            except PIL_ERRORS:
                raise _INVALID from None
            width, height = image.size
            low, high = READ_LIMITS.min_side, READ_LIMITS.max_side
            if not (low < width < high and low < height < high):
                raise _dimension(number)
            pages.append(Page(number, pixels=width * height))
    return Document("tiff", data, count, pages)


def _selected(select: Callable[[int], Sequence[int]], count: int) -> Sequence[int]:
    numbers = select(count)
    if len(numbers) > MAX_PAGES:
        raise _bad(
            "InvalidPageRange",
            f"{len(numbers)} pages are selected; at most {MAX_PAGES} are read at once.",
        )
    return numbers


def _dimension(page: int | None = None) -> ServiceError:
    which = "The image" if page is None else f"Page {page} of the document"
    return _bad(
        "InvalidImageDimension",
        f"{which} must be between 50 x 50 and 10000 x 10000 pixels.",
    )


def _open_pdf(data: bytes, select: Callable[[int], Sequence[int]], max_pixels: int) -> Document:
    try:
        import pypdfium2 as pdfium
    except ImportError as missing:
        raise _bad(
            "UnsupportedImageFormat",
            "This server reads no PDF: it needs pypdfium2, which is "
            f"{import_failure('server', missing)}.",
        ) from None
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError:
            raise _INVALID from None
        try:
            count = len(pdf)
            if count < 1:
                raise _INVALID
            pages = [_pdf_page(pdf, number, max_pixels) for number in _selected(select, count)]
        except BaseException:
            pdf.close()
            raise
    return Document("pdf", data, count, pages, pdf)


def _pdf_page(pdf: Any, number: int, max_pixels: int) -> Page:
    """The rendering of page `number`: `RENDER_DPI`, within `MAX_RENDER_SIDE` and the budget."""
    width, height = (float(side) for side in pdf.get_page_size(number - 1))
    if not (width > 0 and height > 0):
        raise _INVALID
    scale = min(
        RENDER_DPI / 72,
        MAX_RENDER_SIDE / max(width, height),
        math.sqrt(max_pixels / (width * height)),
    )
    pixels = math.ceil(width * scale) * math.ceil(height * scale)
    return Page(number, pixels, (round(width / 72, 4), round(height / 72, 4)), scale)


def _tiff_frame(data: bytes, number: int) -> bytes:
    """Page `number` (from 1) of a TIFF, as a PNG."""
    with decode_frame(data, "tiff", number - 1, READ_LIMITS) as frame:
        return _png(frame if frame.mode in _PNG_MODES else frame.convert("RGB"))


def _png(image: Any) -> bytes:
    """A lossless PNG of `image`, compressed fast: it is decoded again at once."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
