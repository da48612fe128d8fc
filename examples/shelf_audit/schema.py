"""What a shelf audit asks the model for, and the checks derived from its answer.

`viewfinder.BoundingBox` fields sit two levels deep (`Shelf.rows[].products[].box`
and `Shelf.rows[].empty_slots[]`): the model answers them on viewfinder's 0-1000
grid and the `Shelf` you get back holds pixels of the original image.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, Field

import viewfinder as vf


class Product(BaseModel):
    """One product on a shelf row, with all its side-by-side facings."""

    name: str = Field(description="The product name as printed on its label, e.g. 'COLA'.")
    box: vf.BoundingBox
    """Around all the facings of this product in this row, in pixels of the original image.

    No `description` on purpose: the model then sees viewfinder's own one for the field
    ("[x_min, y_min, x_max, y_max] as integers on the 0-1000 grid of the image").
    """
    facings: int = Field(
        ge=1, description="How many units of the product stand side by side, front row only."
    )


class ShelfRow(BaseModel):
    """One shelf board and what stands on it."""

    index: int = Field(ge=1, description="1 for the top row, counting down.")
    products: list[Product] = Field(description="Products on this row, left to right.")
    empty_slots: list[vf.BoundingBox] = Field(
        default_factory=list,
        description="One box per gap where a product is missing (wall or back panel visible).",
    )


class Shelf(BaseModel):
    """A shelf audit: every row, its products and its gaps."""

    rows: list[ShelfRow] = Field(description="Every shelf row, top to bottom.")

    def count_by_name(self) -> dict[str, int]:
        """Facings per product name over all rows.

        Returns:
            Product name to total facings, most facings first.
        """
        counts: Counter[str] = Counter()
        for row in self.rows:
            for product in row.products:
                counts[product.name] += product.facings
        return dict(counts.most_common())

    @property
    def empty_slot_count(self) -> int:
        """Number of gaps over all rows."""
        return sum(len(row.empty_slots) for row in self.rows)

    @property
    def needs_restock(self) -> bool:
        """True when any row has a gap."""
        return self.empty_slot_count > 0
