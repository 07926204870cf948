"""The JSON bodies of the API, as pydantic models (they are the OpenAPI document's schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error: a message, details (each a sentence) and a machine-readable code."""

    error: str = Field(examples=["Invalid parameter"])
    details: list[str] = Field(default_factory=list)
    code: str = Field(examples=["invalid_parameter"])


class FileLink(BaseModel):
    """One monthly Parquet file: its month and a plain-GET URL valid for a few minutes."""

    year: int
    month: int = Field(ge=1, le=12)
    url: str


class FilesResponse(BaseModel):
    """The files that answer a query, one per published month of the range, in month order."""

    files: list[FileLink]


class SymbolsResponse(BaseModel):
    """The Atlas symbols of an exchange with at least one published month."""

    symbols: list[str]
    exchange: str
    bucket: str = "flow"


class FieldInfo(BaseModel):
    """One column of the metric's files."""

    name: str
    type: str


class Coverage(BaseModel):
    """What is published for one instrument: months, intervals and timestamp sources."""

    exchange: str
    symbol: str
    intervals: list[str]
    timestamps: list[str]
    first_month: str = Field(description="first published month, YYYY-MM")
    last_month: str = Field(description="last published month, YYYY-MM")
    last_month_complete: bool = Field(description="false while the last month is still running")
    covered_until: str | None = Field(description="ISO time the last month's bars reach")
    reconciled: dict[str, bool | None] = Field(
        default_factory=dict,
        description="per published month YYYY-MM: true when its bars agreed with the "
        "exchange's own figures (klines, candles), null when not reconciled (the exchange had "
        "none, or the venue publishes none); false cannot be published (such a month is "
        "withheld)",
    )


class MetricInfo(BaseModel):
    """One metric: what it is, its columns, and what is published."""

    id: str
    name: str
    description: str
    category: str
    fields: list[FieldInfo]
    intervals: list[str]
    timestamps: list[str]
    coverage: list[Coverage]


class CatalogResponse(BaseModel):
    """Every metric served."""

    metrics: list[MetricInfo]
