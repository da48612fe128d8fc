"""The 0-1000 grid the model answers on, and the mapping back to pixels.

The model never sees pixel sizes. It answers a box as `[x_min, y_min, x_max, y_max]`
integers on a 0-1000 grid of the (oriented, downscaled) image it was sent, and a
polygon as four `[x, y]` grid points. `model_facing` rewrites a user's schema so that
every `BoundingBox` / `Polygon` (at any depth: nested models, `Optional`, lists,
tuples, dicts) becomes its grid form, and returns a converter that maps a validated
model-facing answer back to the user's schema in pixels of the original image.

An unsupported position (a box as a dict key, in a set, in a union with another
non-`None` type) raises `SchemaError` when the schema is rewritten, never at run time.

That grid is `DEFAULT` of `viewfinder.build.conventions`; another model family's convention
(`y` first, 0-999, 0-1, pixels of the copy) is applied by `retarget`, which rewrites a
model-facing schema's boxes and polygons (marked by `_Geometry` in their `Annotated`
metadata, which pydantic ignores) into that convention's form, and by the `Frame`, which
carries the convention and the copy's size to `box_to_pixels` and `polygon_to_pixels`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from viewfinder.build.conventions import DEFAULT, BoxConvention
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
    "retarget",
]

GRID = 1000
"""Grid size: coordinates run from 0 to 1000 on both axes, whatever the image's shape."""


@dataclass(frozen=True)
class Frame:
    """Pixel size of the original image that answers map onto, and how they are written.

    Attributes:
        width: The original image's width after its EXIF orientation.
        height: Its height.
        convention: How the model wrote boxes and points (`DEFAULT`: the 0-1000 grid).
        copy_width: Width of the copy sent (what a `pixels` convention's numbers measure).
        copy_height: Height of the copy sent.
    """

    width: int
    height: int
    convention: BoxConvention = DEFAULT
    copy_width: int = 0
    copy_height: int = 0


@dataclass(frozen=True)
class _Geometry:
    """Marks a model-facing box or polygon type for `retarget` (pydantic ignores it)."""

    kind: Literal["box", "bare_box", "polygon"]


_BOX = _Geometry("box")
_BARE_BOX = _Geometry("bare_box")
_POLYGON = _Geometry("polygon")


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
    _BOX,
]
"""A box as the model answers it."""

BareGridBox = Annotated[
    list[_GridCoord], Field(min_length=4, max_length=4), AfterValidator(_check_box), _BARE_BOX
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
    _POLYGON,
]
"""A quadrilateral as the model answers it."""


_GRID_DESCRIPTIONS: dict[Any, str] = {
    BoundingBox: "[x_min, y_min, x_max, y_max] as integers on the 0-1000 grid of the image",
    Polygon: "four [x, y] points on the 0-1000 grid, clockwise from the top-left corner",
}


_GRID_WORDING = frozenset(
    [
        *_GRID_DESCRIPTIONS.values(),
        *(m.description for m in get_args(GridBox)[1:] if isinstance(m, FieldInfo)),
        *(m.description for m in get_args(GridPolygon)[1:] if isinstance(m, FieldInfo)),
    ]
)
"""The grid's own descriptions: replaced, not kept, when a field is retargeted."""


def _scale(value: float, size: int) -> int:
    return min(max(round(value * size / GRID), 0), size)


def box_to_pixels(grid_box: Sequence[float], frame: Frame) -> BoundingBox:
    """Map an answered box to pixels of the original image, clamped to its bounds.

    The box is read in `frame.convention` (the 0-1000 grid by default), never guessed.
    """
    if frame.convention is DEFAULT:
        x0, y0, x1, y1 = grid_box
        left, top = _scale(x0, frame.width), _scale(y0, frame.height)
        right, bottom = _scale(x1, frame.width), _scale(y1, frame.height)
    else:
        size, copy = (frame.width, frame.height), (frame.copy_width, frame.copy_height)
        a0, b0, a1, b1 = grid_box
        left, top = frame.convention.point_to_pixels((a0, b0), size, copy)
        right, bottom = frame.convention.point_to_pixels((a1, b1), size, copy)
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


def polygon_to_pixels(grid_points: Sequence[Sequence[float]], frame: Frame) -> Polygon:
    """Map four answered points (in `frame.convention`) to a pixel polygon of the original."""
    if frame.convention is DEFAULT:
        return Polygon(
            points=[
                Point(x=_scale(x, frame.width), y=_scale(y, frame.height)) for x, y in grid_points
            ]
        )
    size, copy = (frame.width, frame.height), (frame.copy_width, frame.copy_height)
    points = [frame.convention.point_to_pixels((a, b), size, copy) for a, b in grid_points]
    return Polygon(points=[Point(x=x, y=y) for x, y in points])


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


# --- another convention's form: `retarget` -------------------------------------------


def _coordinate(convention: BoxConvention, limit: int | None) -> Any:
    """One coordinate as `convention` writes it, with the bounds its scale allows.

    A `pixels` value is bounded by `limit`, the longest side the call's copy can have
    (the schema is the plan's, not the image's): past it is impossible and re-asked;
    between the copy's own edge and `limit` it is clamped when mapped.
    """
    if convention.scale == "unit":
        return Annotated[float, Field(ge=0, le=1)]
    if convention.scale == "pixels":
        return (
            Annotated[int, Field(ge=0)] if limit is None else Annotated[int, Field(ge=0, le=limit)]
        )
    return Annotated[int, Field(ge=0, le=convention.top)]


@cache
def box_type(convention: BoxConvention, *, described: bool = True, limit: int | None = None) -> Any:
    """The model-facing box of `convention` (`GridBox` / `BareGridBox` for `DEFAULT`);
    `limit`: a `pixels` value's bound (see `_coordinate`)."""
    if convention is DEFAULT:
        return GridBox if described else BareGridBox

    def check(value: list[Any]) -> list[Any]:
        if value[0] >= value[2] or value[1] >= value[3]:
            raise ValueError(convention.empty_box_message(value))
        return value

    size = Field(min_length=4, max_length=4)
    if described:
        size = Field(min_length=4, max_length=4, description=convention.box_description())
    coordinate = _coordinate(convention, limit)
    return Annotated[_generic(list, coordinate), size, AfterValidator(check), _BOX]


@cache
def polygon_type(convention: BoxConvention, limit: int | None = None) -> Any:
    """The model-facing polygon of `convention` (`GridPolygon` for `DEFAULT`)."""
    if convention is DEFAULT:
        return GridPolygon
    point: Any = Annotated[
        _generic(list, _coordinate(convention, limit)), Field(min_length=2, max_length=2)
    ]
    return Annotated[
        _generic(list, point),
        Field(min_length=4, max_length=4, description=convention.polygon_description()),
        _POLYGON,
    ]


def _geometry_of(metadata: Sequence[Any]) -> _Geometry | None:
    return next((m for m in metadata if isinstance(m, _Geometry)), None)


def _retyped(geometry: _Geometry, convention: BoxConvention, limit: int | None) -> Any:
    if geometry.kind == "polygon":
        return polygon_type(convention, limit)
    return box_type(convention, described=geometry.kind == "box", limit=limit)


def _retarget_annotation(annotation: Any, convention: BoxConvention, limit: int | None) -> Any:
    """`annotation` with every marked box/polygon and every model in `convention`'s form."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return retarget(annotation, convention, limit)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        geometry = _geometry_of(args[1:])
        if geometry is not None:
            return _retyped(geometry, convention, limit)
        return Annotated[(_retarget_annotation(args[0], convention, limit), *args[1:])]
    if not args:
        return annotation
    new_args = tuple(_retarget_annotation(arg, convention, limit) for arg in args)
    if new_args == args:
        return annotation
    if origin in (Union, types.UnionType):
        return Union[new_args]  # noqa: UP007 - built at run time
    return _generic(origin, *new_args)


def _kept(info: FieldInfo) -> Any:
    """A marked field's own settings: default, alias, and a description of the user's
    (a grid description gives way to the convention's)."""
    default = ... if info.is_required() else info.default
    description = info.description
    if description in _GRID_WORDING:
        description = None
    settings: dict[str, Any] = {"alias": info.alias}
    if description is not None:
        settings["description"] = description
    return Field(default, **settings)


def retarget(
    model: type[BaseModel], convention: BoxConvention, limit: int | None = None
) -> type[BaseModel]:
    """`model` (a model-facing schema) with its boxes and polygons in `convention`'s form.

    `limit`: for a `pixels` convention, the longest side the call's copy can have, the
    bound of every value (`BaseAnalyzer.pixel_limit`); ignored by the other scales.

    `DEFAULT` returns `model` itself, so today's schemas (and request bodies) are unchanged.
    Another convention gets a subclass of the same name (validators, config and schema
    hooks kept) whose marked fields take `box_type` / `polygon_type`, at any depth.
    """
    return _retarget(model, convention, limit if convention.scale == "pixels" else None)


@cache
def _retarget(
    model: type[BaseModel], convention: BoxConvention, limit: int | None
) -> type[BaseModel]:
    """`retarget`, once per model, convention and limit."""
    if convention is DEFAULT:
        return model
    overrides: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        geometry = _geometry_of(info.metadata)
        if geometry is not None:
            overrides[name] = (_retyped(geometry, convention, limit), _kept(info))
            continue
        annotation = _retarget_annotation(info.annotation, convention, limit)
        if annotation is not info.annotation and annotation != info.annotation:
            overrides[name] = (annotation, FieldInfo.merge_field_infos(info, annotation=annotation))
    if not overrides:
        return model
    return create_model(
        model.__name__,
        __base__=model,
        __module__=model.__module__,
        __doc__=model.__doc__,
        **overrides,
    )
