"""What a receipt reader asks the model for, with the validators that check its answer.

Every validator here runs on each answer. An answer that fails one (a total that does
not add up, a date in the future, a currency that is not an ISO 4217 code) is sent back
to the model with the error message, and the model tries again, at most `max_reasks`
times.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

TOLERANCE = Decimal("0.01")
"""How far the total may be from the sum of the items (rounding on the till)."""
EARLIEST = dt.date(2000, 1, 1)
"""Receipts older than this are taken as a misread year."""
CENT = Decimal("0.01")


def _in_cents(value: Decimal) -> Decimal:
    """Write an amount with exactly two decimals (`8.9` becomes `8.90`)."""
    return value.quantize(CENT)


Money = Annotated[Decimal, Field(decimal_places=2), AfterValidator(_in_cents)]
"""An amount with at most two decimals (more is an error, re-asked), kept as `x.yy`."""


class LineItem(BaseModel):
    """One purchased line of the receipt."""

    description: str = Field(description="The line's text as printed, without the price.")
    amount: Money = Field(
        gt=0,
        description="The price of the line (quantity included), as printed, e.g. 3.60.",
    )


class Receipt(BaseModel):
    """A till receipt: who, when, what, and how much."""

    merchant: str = Field(description="The shop name as printed at the top.")
    date: dt.date = Field(description="The purchase date, as YYYY-MM-DD.")
    currency: str = Field(
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the currency, three upper-case letters, e.g. EUR.",
    )
    items: list[LineItem] = Field(
        min_length=1, description="Every purchased line, top to bottom; not the total."
    )
    total: Money = Field(ge=0, description="The total to pay, as printed next to TOTAL.")

    @field_validator("date")
    @classmethod
    def _plausible_date(cls, value: dt.date) -> dt.date:
        """Reject dates in the future or before 2000: both mean a misread date."""
        if value > dt.date.today():
            raise ValueError(f"date {value.isoformat()} is in the future; read it again")
        if value < EARLIEST:
            raise ValueError(f"date {value.isoformat()} is before 2000; read the year again")
        return value

    @model_validator(mode="after")
    def _total_adds_up(self) -> Receipt:
        """Reject a total that differs from the sum of the items by more than 0.01."""
        if abs(self.total - self.items_total) > TOLERANCE:
            raise ValueError(
                f"total {self.total} differs from the sum of the items ({self.items_total}); "
                "check for a missed or misread line"
            )
        return self

    @property
    def items_total(self) -> Decimal:
        """The sum of the line amounts."""
        return sum((item.amount for item in self.items), Decimal("0.00"))
