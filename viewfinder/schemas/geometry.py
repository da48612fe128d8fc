"""Pixel geometry shared by built-in and custom schemas.

`BoundingBox` and `Polygon` are what users hold: integer pixels of the original
image (after EXIF orientation). The model never answers these directly: it answers
boxes as `[x_min, y_min, x_max, y_max]` on a 0-1000 grid of the image it was sent,
and viewfinder converts (see `viewfinder.build.grid`).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BoundingBox", "Point", "Polygon"]


class Point(BaseModel):
    """A point in pixels of the original image."""

    model_config = ConfigDict(frozen=True)

    x: int
    """Distance from the left edge, in pixels."""
    y: int
    """Distance from the top edge, in pixels."""


class BoundingBox(BaseModel):
    """An axis-aligned rectangle in pixels of the original image (Azure's `{x, y, w, h}`)."""

    model_config = ConfigDict(frozen=True)

    x: int = Field(ge=0)
    """Left edge, in pixels."""
    y: int = Field(ge=0)
    """Top edge, in pixels."""
    width: int = Field(ge=0)
    """Width in pixels."""
    height: int = Field(ge=0)
    """Height in pixels."""

    @property
    def area(self) -> int:
        """Width times height, in square pixels."""
        return self.width * self.height

    @property
    def xyxy(self) -> tuple[int, int, int, int]:
        """The box as `(x_min, y_min, x_max, y_max)`."""
        return (self.x, self.y, self.x + self.width, self.y + self.height)

    def to_polygon(self) -> Polygon:
        """The four corners, clockwise from top-left."""
        x0, y0, x1, y1 = self.xyxy
        return Polygon(
            points=[Point(x=x0, y=y0), Point(x=x1, y=y0), Point(x=x1, y=y1), Point(x=x0, y=y1)]
        )


class Polygon(BaseModel):
    """A quadrilateral: four points clockwise from top-left (Azure's `boundingPolygon`)."""

    model_config = ConfigDict(frozen=True)

    points: list[Point] = Field(min_length=4, max_length=4)
    """The four corners, clockwise from the top-left one."""

    def __iter__(self) -> Iterator[Point]:  # type: ignore[override]
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int) -> Point:
        return self.points[index]

    @property
    def bounds(self) -> BoundingBox:
        """The smallest axis-aligned box that holds the polygon."""
        xs = [p.x for p in self.points]
        ys = [p.y for p in self.points]
        return BoundingBox(x=min(xs), y=min(ys), width=max(xs) - min(xs), height=max(ys) - min(ys))
