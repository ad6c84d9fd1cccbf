"""The model price table: a CSV shipped with Tally, optionally extended or overridden by the operator's own.

Columns: provider, model, input_per_mtok, cached_input_per_mtok, output_per_mtok, per_image, effective_from
(USD per million tokens, or per image; a row applies from its date until the model's next row). A model id
resolves to the longest table entry it starts with at a word boundary, so dated variants
(`gpt-4o-2024-08-06`, `claude-3-5-sonnet-20241022`) and Bedrock ids (`us.anthropic.claude-3-haiku-…-v1:0`)
find their family. An unknown model resolves to nothing: it is reported as unpriced, never as $0.
"""

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from tally.store.limits import MAX_PRICE_PER_UNIT

SHIPPED = Path(__file__).with_name("prices.csv")
_COLUMNS = ("provider", "model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok", "per_image",
            "effective_from")
_BOUNDARY = "-:@/_"
_REGION_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "ca.", "jp.", "au.")


class PriceFileError(ValueError):
    """A price file that cannot be read; names the file, line and column."""


@dataclass(frozen=True, slots=True)
class Price:
    provider: str
    model: str
    input_per_mtok: float | None
    cached_input_per_mtok: float | None
    output_per_mtok: float | None
    per_image: float | None
    effective_ms: int  # the model's first row applies to all earlier time too


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: tuple[Price, ...]
    fingerprint: str  # changes whenever any price changes, so history gets recomputed

    def resolve(self, provider: str, model: str) -> tuple[str, str] | None:
        """The (provider, model) table entry that prices `model`, or None when it is unpriced."""
        name = (model or "").lower()
        if provider == "bedrock":
            name = next((name[len(p):] for p in _REGION_PREFIXES if name.startswith(p)), name)
        providers = {p.provider for p in self.prices} if provider == "universal" else {provider}
        best = None
        for price in self.prices:
            key = price.model.lower()
            prefix = name.startswith(key) and (len(name) == len(key) or name[len(key)] in _BOUNDARY)
            if price.provider in providers and prefix and (best is None or len(key) > len(best[1])):
                best = (price.provider, price.model)
        return best


def load_prices(override: Path | None = None) -> PriceTable:
    """The shipped table, with the operator's rows replacing shipped rows of the same provider, model and date."""
    rows = {(r[0], r[1], r[6]): r for r in _read(SHIPPED)}
    if override is not None:
        rows.update({(r[0], r[1], r[6]): r for r in _read(override)})
    ordered = sorted(rows.values(), key=lambda r: (r[0], r[1], r[6]))
    first_dates: dict[tuple[str, str], str] = {}
    for row in ordered:
        first_dates.setdefault((row[0], row[1]), row[6])
    prices = tuple(
        Price(row[0], row[1], row[2], row[3], row[4], row[5],
              0 if first_dates[(row[0], row[1])] == row[6] else _epoch_ms(row[6]))
        for row in ordered
    )
    fingerprint = hashlib.sha256(repr(prices).encode()).hexdigest()[:16]
    return PriceTable(prices, fingerprint)


def _read(path: Path) -> list[tuple]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise PriceFileError(f"{path}: missing columns {', '.join(sorted(missing))}")
            return [_row(path, number, record) for number, record in enumerate(reader, start=2)]
    except OSError as error:
        raise PriceFileError(f"{path}: {error.strerror}") from None


def _row(path: Path, number: int, record: dict) -> tuple:
    def amount(column: str) -> float | None:
        text = (record[column] or "").strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise PriceFileError(f"{path}:{number}: {column} is not a number: {text!r}") from None
        if not 0 <= value <= MAX_PRICE_PER_UNIT:  # also refuses nan and inf
            raise PriceFileError(f"{path}:{number}: {column} must be between 0 and {MAX_PRICE_PER_UNIT:,.0f} "
                                 f"(USD per million tokens or per image), not {text}")
        return value

    try:
        effective = date.fromisoformat(record["effective_from"].strip()).isoformat()
    except ValueError:
        raise PriceFileError(f"{path}:{number}: effective_from must be YYYY-MM-DD") from None
    provider, model = record["provider"].strip(), record["model"].strip()
    if not provider or not model:
        raise PriceFileError(f"{path}:{number}: provider and model are required")
    return (provider, model, amount("input_per_mtok"), amount("cached_input_per_mtok"),
            amount("output_per_mtok"), amount("per_image"), effective)


def _epoch_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)
