"""The 0-1000 grid the model answers on, and the mapping back to pixels.

The model never sees pixel sizes. It answers a box as `[x_min, y_min, x_max, y_max]`
integers on a 0-1000 grid of the (oriented, downscaled) image it was sent, and a
polygon as four `[x, y]` grid points. `model_facing` rewrites a user's schema so that
every `BoundingBox` / `Polygon` (at any depth: nested models, `Optional`, lists,
tuples, dicts) becomes its grid form, and returns a converter that maps a validated
model-facing answer back to the user's schema in pixels of the original image.

An unsupported position (a box as a dict key, in a set, in a union with another
non-`None` type) raises `SchemaError` when the schema is rewritten, never at run time.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from viewfinder.errors import SchemaError
from viewfinder.schemas.geometry import BoundingBox, Point, Polygon

__all__ = [
    "GRID",
    "BareGridBox",
    "Frame",
    "GridBox",
    "GridPolygon",
    "ModelFacing",
    "box_to_grid",
    "box_to_pixels",
    "model_facing",
    "polygon_to_pixels",
]

GRID = 1000
"""Grid size: coordinates run from 0 to 1000 on both axes, whatever the image's shape."""


@dataclass(frozen=True)
class Frame:
    """Pixel size of the original image that grid coordinates map onto."""

    width: int
    height: int


def _check_box(value: list[int]) -> list[int]:
    x0, y0, x1, y1 = value
    if x0 >= x1 or y0 >= y1:
        raise ValueError(
            f"box {value} is empty: it must be [x_min, y_min, x_max, y_max] "
            "with x_min < x_max and y_min < y_max"
        )
    return value


_GridCoord = Annotated[int, Field(ge=0, le=GRID)]

GridBox = Annotated[
    list[_GridCoord],
    Field(
        min_length=4,
        max_length=4,
        description="[x_min, y_min, x_max, y_max] as integers on a 0-1000 grid of the image "
        "(0,0 = top-left corner, 1000,1000 = bottom-right corner)",
    ),
    AfterValidator(_check_box),
]
"""A box as the model answers it."""

BareGridBox = Annotated[
    list[_GridCoord], Field(min_length=4, max_length=4), AfterValidator(_check_box)
]
"""`GridBox` without a description: for schemas whose prompt describes boxes once."""

GridPoint = Annotated[list[_GridCoord], Field(min_length=2, max_length=2)]

GridPolygon = Annotated[
    list[GridPoint],
    Field(
        min_length=4,
        max_length=4,
        description="four [x, y] points on the 0-1000 grid, clockwise from the top-left corner",
    ),
]
"""A quadrilateral as the model answers it."""


_GRID_DESCRIPTIONS: dict[Any, str] = {
    BoundingBox: "[x_min, y_min, x_max, y_max] as integers on the 0-1000 grid of the image",
    Polygon: "four [x, y] points on the 0-1000 grid, clockwise from the top-left corner",
}


def _scale(value: int, size: int) -> int:
    return min(max(round(value * size / GRID), 0), size)


def box_to_pixels(grid_box: Sequence[int], frame: Frame) -> BoundingBox:
    """Map a grid box to pixels of the original image, clamped to its bounds."""
    x0, y0, x1, y1 = grid_box
    left, top = _scale(x0, frame.width), _scale(y0, frame.height)
    right, bottom = _scale(x1, frame.width), _scale(y1, frame.height)
    return BoundingBox(x=left, y=top, width=max(right - left, 0), height=max(bottom - top, 0))


def box_to_grid(box: BoundingBox, frame: Frame) -> list[int]:
    """A pixel box of an image of `frame`'s size as a grid box (the inverse of `box_to_pixels`).

    For writing example answers in the model's form; an empty box keeps one grid unit.
    """

    def scale(value: int, size: int) -> int:
        return min(max(round(value * GRID / size), 0), GRID)

    x0, y0 = scale(box.x, frame.width), scale(box.y, frame.height)
    x1 = max(scale(box.x + box.width, frame.width), min(x0 + 1, GRID))
    y1 = max(scale(box.y + box.height, frame.height), min(y0 + 1, GRID))
    return [min(x0, x1 - 1), min(y0, y1 - 1), x1, y1]


def polygon_to_pixels(grid_points: Sequence[Sequence[int]], frame: Frame) -> Polygon:
    """Map four grid points to a pixel polygon of the original image."""
    return Polygon(
        points=[Point(x=_scale(x, frame.width), y=_scale(y, frame.height)) for x, y in grid_points]
    )


Converter = Callable[[Any, Frame], Any]


@dataclass(frozen=True)
class ModelFacing:
    """A type as the model sees it, and how to bring its values back to the user's type."""

    annotation: Any
    """The annotation to use in the model-facing schema."""
    convert: Converter | None
    """Maps a validated model-facing value to the user's value; `None` if nothing to map."""


def _generic(origin: Any, *args: Any) -> Any:
    """`origin[args]`, built at run time (`list[X]`, `dict[K, V]`, `tuple[X, ...]`)."""
    return origin[args[0] if len(args) == 1 else args]


def _identity_free(annotation: Any) -> ModelFacing:
    return ModelFacing(annotation, None)


def model_facing(annotation: Any, *, where: str = "schema") -> ModelFacing:
    """Rewrite `annotation` so boxes and polygons take their grid form.

    Args:
        annotation: A type: a `BaseModel` subclass or any annotation that may contain one.
        where: Where the annotation sits, for error messages.

    Raises:
        SchemaError: `BoundingBox` or `Polygon` sits where it cannot be mapped.
    """
    if annotation is BoundingBox:
        return ModelFacing(GridBox, box_to_pixels)
    if annotation is Polygon:
        return ModelFacing(GridPolygon, polygon_to_pixels)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model(annotation)

    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        inner = model_facing(args[0], where=where)
        if inner.convert is None:
            return _identity_free(annotation)
        return ModelFacing(Annotated[(inner.annotation, *args[1:])], inner.convert)
    if origin in (Union, types.UnionType):
        return _union(annotation, args, where)
    if origin in (list, Sequence, typing.Sequence):
        return _sequence(args, where, list)
    if origin is tuple:
        return _tuple(args, where)
    if origin in (dict, Mapping, typing.Mapping):
        return _mapping(args, where)
    if origin in (set, frozenset) and args and _contains_geometry(args[0]):
        raise SchemaError(f"{where}: a BoundingBox or Polygon cannot sit in a set")
    if args and any(_contains_geometry(arg) for arg in args):
        raise SchemaError(f"{where}: BoundingBox or Polygon inside {annotation!r} is not supported")
    return _identity_free(annotation)


def _contains_geometry(annotation: Any) -> bool:
    if annotation in (BoundingBox, Polygon):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model(annotation).convert is not None
    return any(_contains_geometry(arg) for arg in get_args(annotation))


def _union(annotation: Any, args: tuple[Any, ...], where: str) -> ModelFacing:
    members = [arg for arg in args if arg is not type(None)]
    rewritten = [model_facing(arg, where=where) for arg in members]
    if all(member.convert is None for member in rewritten):
        return _identity_free(annotation)
    if len(members) > 1:
        raise SchemaError(
            f"{where}: a BoundingBox or Polygon in a union with other types is ambiguous; "
            "use Optional[...] or a nested model"
        )
    inner = rewritten[0]
    assert inner.convert is not None
    convert = inner.convert
    optional = len(members) < len(args)
    new_annotation = inner.annotation | None if optional else inner.annotation

    def convert_optional(value: Any, frame: Frame) -> Any:
        return None if value is None else convert(value, frame)

    return ModelFacing(new_annotation, convert_optional)


def _sequence(args: tuple[Any, ...], where: str, container: type) -> ModelFacing:
    if not args:
        return _identity_free(list)
    inner = model_facing(args[0], where=where)
    if inner.convert is None:
        return _identity_free(_generic(list, args[0]))
    convert = inner.convert

    def convert_items(values: Any, frame: Frame) -> Any:
        return container(convert(value, frame) for value in values)

    return ModelFacing(_generic(list, inner.annotation), convert_items)


def _tuple(args: tuple[Any, ...], where: str) -> ModelFacing:
    if len(args) == 2 and args[1] is Ellipsis:
        inner = model_facing(args[0], where=where)
        if inner.convert is None:
            return _identity_free(_generic(tuple, args[0], ...))
        convert = inner.convert

        def convert_items(values: Any, frame: Frame) -> Any:
            return tuple(convert(value, frame) for value in values)

        return ModelFacing(_generic(tuple, inner.annotation, ...), convert_items)
    items = [model_facing(arg, where=where) for arg in args]
    if all(item.convert is None for item in items):
        return _identity_free(_generic(tuple, *args))

    def convert_fixed(values: Any, frame: Frame) -> Any:
        return tuple(
            value if item.convert is None else item.convert(value, frame)
            for item, value in zip(items, values, strict=True)
        )

    annotations = tuple(item.annotation for item in items)
    return ModelFacing(_generic(tuple, *annotations), convert_fixed)


def _mapping(args: tuple[Any, ...], where: str) -> ModelFacing:
    if not args:
        return _identity_free(dict)
    key, value_type = args
    if _contains_geometry(key):
        raise SchemaError(f"{where}: a BoundingBox or Polygon cannot be a dict key")
    inner = model_facing(value_type, where=where)
    if inner.convert is None:
        return _identity_free(_generic(dict, key, value_type))
    convert = inner.convert

    def convert_values(values: Any, frame: Frame) -> Any:
        return {k: convert(v, frame) for k, v in values.items()}

    return ModelFacing(_generic(dict, key, inner.annotation), convert_values)


@cache
def _model(model: type[BaseModel]) -> ModelFacing:
    """Rewrite a model: a subclass (keeping its validators) with grid-form fields."""
    overrides: dict[str, Any] = {}
    converters: dict[str, Converter] = {}
    for name, info in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        rewritten = model_facing(info.annotation, where=where)
        if rewritten.convert is None:
            continue
        converters[name] = rewritten.convert
        new_info = FieldInfo.merge_field_infos(info, annotation=rewritten.annotation)
        if new_info.description is None and info.annotation in _GRID_DESCRIPTIONS:
            new_info.description = _GRID_DESCRIPTIONS[info.annotation]
        overrides[name] = (rewritten.annotation, new_info)
    if not converters:
        return ModelFacing(model, None)

    facing = create_model(
        model.__name__,
        __base__=model,
        __module__=model.__module__,
        __doc__=model.__doc__,
        **overrides,
    )

    def convert_model(value: Any, frame: Frame) -> Any:
        data = {
            name: converters[name](getattr(value, name), frame)
            if name in converters
            else getattr(value, name)
            for name in model.model_fields
        }
        return model.model_construct(_fields_set=value.model_fields_set, **data)

    return ModelFacing(facing, convert_model)
