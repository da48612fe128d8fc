"""Reading the compare report's HTML page in tests: its structure, pictures and assets."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from PIL import Image

_DATA_JPEG = "data:image/jpeg;base64,"


@dataclass
class Page:
    """What the page holds: image sections (their names), figure labels, pictures, charts."""

    sections: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    pictures: list[Image.Image] = field(default_factory=list)
    picture_bytes: list[int] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)
    svgs: int = 0
    shown: str = ""


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._into: str | None = None
        self._section = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        classes = (attr.get("class") or "").split()
        if tag == "section" and "image" in classes:
            self._section = True
        elif tag == "h3" and self._section:
            self._into = "section"
        elif tag == "figcaption":
            self._into = "label"
        elif tag == "p" and "shown" in classes:
            self._into = "shown"
        elif tag == "div" and "chart" in classes:
            self.page.charts.append(str(attr.get("id")))
        elif tag == "svg":
            self.page.svgs += 1
        elif tag == "img":
            src = attr.get("src") or ""
            assert src.startswith(_DATA_JPEG), src[:40]
            data = base64.b64decode(src[len(_DATA_JPEG) :])
            self.page.picture_bytes.append(len(data))
            with Image.open(io.BytesIO(data)) as picture:
                picture.load()
                self.page.pictures.append(picture)
                assert (str(picture.width), str(picture.height)) == (
                    attr.get("width"),
                    attr.get("height"),
                )

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = False
        self._into = None

    def handle_data(self, data: str) -> None:
        if self._into == "section":
            self.page.sections.append(data)
        elif self._into == "label":
            self.page.labels.append(data)
        elif self._into == "shown":
            self.page.shown += data


def parse_page(page: str) -> Page:
    """The page parsed (an HTML parser, not string search); every <img> is checked to be
    a JPEG data URL whose width and height attributes are the picture's."""
    parser = _Parser()
    parser.feed(page)
    parser.close()
    return parser.page


_REMOTE = re.compile(
    r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//""", re.I
)


def assert_self_contained(page: str) -> None:
    """No remote asset: no http(s) or protocol-relative src, href or url(); no script or
    stylesheet link at all."""
    assert not _REMOTE.search(page), _REMOTE.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page
