"""The scheduler's table: one row per scheduled time of a job, which is also its lock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chassis.database.models import Base, UTCDateTime


class JobRun(Base):
    """One scheduled time of one job (chassis/scheduler/): who holds it, until when, the outcome.

    The unique (job, scheduled_at) pair is the lock: whoever inserts the row runs that time.
    """

    __tablename__ = "job_runs"
    __table_args__ = (
        UniqueConstraint("job", "scheduled_at"),
        # The takeover scan: running rows whose lease has expired.
        Index("ix_job_runs_status_lease_expires_at", "status", "lease_expires_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(100))
    scheduled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # running, succeeded, failed, or abandoned (holders kept dying: see max_attempts).
    status: Mapped[str] = mapped_column(String(16))
    # The scheduler instance holding the lease: host, pid and a random token, because a
    # restarted container reuses the same pid.
    holder: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(100))
    pid: Mapped[int] = mapped_column(Integer)
    lease_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    tracking_id: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    def to_dict(self) -> dict[str, Any]:
        """Return the run as `flask scheduler history` shows it."""
        return {column.name: getattr(self, column.name) for column in self.__table__.columns}
