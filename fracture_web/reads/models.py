"""The two tables: one row per analysed image, one per read given for it (the last one counts; the
earlier ones stay as the audit trail). Only what the statistics need: no pixels, no patient identifiers."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: The answers a reader may give: fracture, no fracture, not sure.
READS = ("fractured", "not_fractured", "unsure")


class Base(DeclarativeBase):
    """The declarative base of the reads' tables (``Base.metadata`` is what the migrations build)."""


class AnalysisRecord(Base):
    """One analysed image as the model answered it, under the answer's ``request_id``."""

    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    analysed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(16))  # "web" (the page or the API) or "dicom" (the node)
    model_version: Mapped[str] = mapped_column(String(64))
    operating_point: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    calibration: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float] = mapped_column(Float)
    fractured: Mapped[bool]
    findings: Mapped[list] = mapped_column(JSON)  # [{"box": [x0, y0, x1, y1], "score": s, "level": l}, ...]
    body_part: Mapped[str | None] = mapped_column(String(64))  # DICOM BodyPartExamined, where known
    view: Mapped[str | None] = mapped_column(String(64))  # DICOM ViewPosition, where known
    reads: Mapped[list[Read]] = relationship(back_populates="analysis", order_by="Read.id")


class Read(Base):
    """A reader's answer for one analysis; ``findings_right`` lists the ranks (1 = highest score) of the
    findings the reader confirmed, when given; ``reader`` is a code the site chooses, never a name."""

    __tablename__ = "reads"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    analysis_id: Mapped[str] = mapped_column(ForeignKey("analyses.id"), index=True)
    read: Mapped[str] = mapped_column(String(16))
    read_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reader: Mapped[str | None] = mapped_column(String(32))
    findings_right: Mapped[list | None] = mapped_column(JSON)
    analysis: Mapped[AnalysisRecord] = relationship(back_populates="reads")
