"""Where the analyses and the reads are kept: SQLite in the instance folder by default (write-ahead
log, so several gunicorn workers share it), PostgreSQL when a URL names it, through SQLAlchemy; the
schema is built and kept up to date by Alembic's migrations at start-up.

A database that cannot be reached raises ``StoreUnavailableError`` from every call; the caller
decides what that means (the analysis still answers, the read is refused with a reason).
"""
from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ..inference import Prediction
from .models import READS, AnalysisRecord, Read

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Seconds to wait for a PostgreSQL server, or for SQLite's write lock held by another worker.
CONNECT_TIMEOUT = 5
#: The advisory lock PostgreSQL's migrations take, so that workers starting together migrate one at a time.
MIGRATION_LOCK = 25_0001


#: Each supported dialect's INSERT, which has ``on_conflict_do_update``.
UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class StoreUnavailableError(RuntimeError):
    """The database could not be reached or refused the work."""


class UnknownAnalysisError(LookupError):
    """No analysis is stored under that id."""


class NoSuchFindingError(ValueError):
    """A read names a finding (by its rank) that the analysis did not show."""



@dataclass(frozen=True)
class StoredAnalysis:
    """One stored analysis with the read that counts (the latest; ``None`` before any) and how many
    reads were given for it in all."""

    id: str
    analysed_at: datetime
    source: str
    model_version: str
    operating_point: str
    threshold: float
    calibration: str
    probability: float
    fractured: bool
    findings: tuple[dict, ...]
    body_part: str | None
    view: str | None
    read: str | None = None
    read_at: datetime | None = None
    reader: str | None = None
    findings_right: tuple[int, ...] | None = None
    reads_given: int = 0


def database_url(url: str | None, instance_path: str | Path) -> str:
    """``url`` as SQLAlchemy takes it (``postgresql://`` through psycopg 3), or the instance folder's SQLite."""
    if url is None:
        return f"sqlite:///{Path(instance_path).resolve() / 'reads.sqlite3'}"
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite with its write-ahead log and a wait for the write lock, or a
    server that is given a few seconds to answer."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": CONNECT_TIMEOUT})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT})


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={CONNECT_TIMEOUT * 1000}")
    cursor.close()


class ReadStore:
    """The analyses and their reads in one database; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._migrated = False
        self._upsert = _upsert(engine.dialect.name)

    @classmethod
    def open(cls, url: str) -> ReadStore:
        """A store on ``url`` (see :func:`database_url`); nothing is connected until it is used."""
        return cls(make_engine(url))

    def upgrade(self) -> None:
        """Build or migrate the schema to the newest revision (once per process; workers take turns)."""
        if self._migrated:
            return
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._errors(), self._migration_lock(), self.engine.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        self._migrated = True

    def _migration_lock(self):
        """An exclusive lock beside an SQLite file while it is migrated (PostgreSQL locks in the transaction)."""
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return nullcontext()
        return _file_lock(Path(database + ".migrating"))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (SQLAlchemyError, OSError) as err:  # OSError: the SQLite file's folder or lock
            raise StoreUnavailableError(f"the reads' database is unavailable ({type(err).__name__})") from err

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session in one transaction, on a schema brought up to date first."""
        self.upgrade()
        with self._errors(), self._sessions.begin() as session:
            yield session

    def add_analysis(self, analysis_id: str, prediction: Prediction, context: Mapping[str, str],
                     source: str = "web", at: datetime | None = None) -> None:
        """Keep what the statistics need of one analysed image (its DICOM body part and view, where known);
        an id kept before (the node's result for an image sent again) is replaced, its reads kept."""
        row = dict(
            id=analysis_id, analysed_at=at or _now(), source=source, model_version=prediction.model_version,
            operating_point=prediction.operating_point, threshold=prediction.threshold,
            calibration=prediction.calibration, probability=prediction.probability, fractured=prediction.fractured,
            findings=[finding.as_dict() for finding in prediction.findings],
            body_part=context.get("body_part"), view=context.get("view_position"))
        self.upgrade()
        with self._errors(), self.engine.begin() as connection:
            connection.execute(self._upsert, row)

    def add_read(self, analysis_id: str, read: str, reader: str | None = None,
                 findings_right: tuple[int, ...] | None = None, at: datetime | None = None) -> StoredAnalysis:
        """Record a reader's answer for a stored analysis (``UnknownAnalysisError`` when there is none,
        ``NoSuchFindingError`` when ``findings_right`` names a finding it did not show); the analysis as
        it now stands."""
        if read not in READS:
            raise ValueError(f"a read is one of {', '.join(READS)}")
        with self._session() as session:
            record = session.get(AnalysisRecord, analysis_id, options=[selectinload(AnalysisRecord.reads)])
            if record is None:
                raise UnknownAnalysisError(analysis_id)
            shown = len(record.findings or [])
            if findings_right and max(findings_right) > shown:
                raise NoSuchFindingError(f"the analysis showed {shown} finding(s); a read names finding {max(findings_right)}")
            record.reads.append(Read(read=read, read_at=at or _now(), reader=reader,
                                     findings_right=None if findings_right is None else list(findings_right)))
            session.flush()
            return _stored(record)

    def get(self, analysis_id: str) -> StoredAnalysis:
        """The analysis stored under ``analysis_id`` with its read (``UnknownAnalysisError`` when there is none)."""
        with self._session() as session:
            record = session.get(AnalysisRecord, analysis_id, options=[selectinload(AnalysisRecord.reads)])
            if record is None:
                raise UnknownAnalysisError(analysis_id)
            return _stored(record)

    def all(self) -> list[StoredAnalysis]:
        """Every stored analysis, oldest first, with the read that counts."""
        query = select(AnalysisRecord).options(selectinload(AnalysisRecord.reads)).order_by(
            AnalysisRecord.analysed_at, AnalysisRecord.id)
        with self._session() as session:
            return [_stored(record) for record in session.scalars(query)]

    def dispose(self) -> None:
        """Close the pooled connections (a worker's exit; tests)."""
        self.engine.dispose()


def _upsert(dialect: str):
    """INSERT ... ON CONFLICT (id) DO UPDATE of an analysis row, built once: the request waits for
    it, and a prepared statement skips the SELECT, the unit of work and the statement's compilation
    that ``Session.merge`` costs each time. SQLite and PostgreSQL both have it."""
    insert = UPSERTS[dialect](AnalysisRecord)
    columns = [column.name for column in AnalysisRecord.__table__.columns if column.name != "id"]
    return insert.on_conflict_do_update(index_elements=[AnalysisRecord.id],
                                        set_={name: insert.excluded[name] for name in columns})


def _stored(record: AnalysisRecord) -> StoredAnalysis:
    last = record.reads[-1] if record.reads else None
    return StoredAnalysis(
        record.id, _utc(record.analysed_at), record.source, record.model_version, record.operating_point,
        record.threshold, record.calibration, record.probability, record.fractured, tuple(record.findings),
        record.body_part, record.view, read=last and last.read, read_at=last and _utc(last.read_at),
        reader=last and last.reader,
        findings_right=None if last is None or last.findings_right is None else tuple(last.findings_right),
        reads_given=len(record.reads))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(moment: datetime) -> datetime:
    """SQLite gives back times without their zone: they were stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
