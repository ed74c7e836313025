"""`flask scheduler ...`: run the scheduler as a process of its own, and read its history."""

from __future__ import annotations

import datetime as dt
import json
import signal
from types import FrameType

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from chassis.database.sessions import get_db
from chassis.scheduler.models import JobRun
from chassis.scheduler.runner import Scheduler, load_registry
from chassis.settings import get_settings

cli = AppGroup("scheduler", help="Scheduled jobs (app/jobs.py).")


@cli.command("run")
@click.option(
    "--shutdown-wait",
    default=25.0,
    show_default=True,
    help="Seconds running jobs get to finish after SIGTERM before their runs are "
    "handed back; keep it below your process manager's stop timeout.",
)
def run(shutdown_wait: float) -> None:
    """Run the jobs in this process until SIGTERM or Ctrl-C (instead of in gunicorn)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = get_settings(app)
    scheduler = Scheduler(app, load_registry(settings))

    def stop(signum: int, _: FrameType | None) -> None:
        scheduler.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheduler.run()
    scheduler.stop(wait=shutdown_wait)


@cli.command("history")
@click.option("--job", help="Only this job.")
@click.option("--limit", default=20, show_default=True, help="Newest runs to show.")
def history(job: str | None, limit: int) -> None:
    """Print the newest runs as JSON lines, newest first."""
    query = select(JobRun).order_by(JobRun.scheduled_at.desc(), JobRun.id.desc()).limit(limit)
    if job:
        query = query.where(JobRun.job == job)
    with get_db().session_scope() as session:
        for job_run in session.scalars(query):
            click.echo(json.dumps(job_run.to_dict(), default=_iso))


def _iso(value: object) -> str:
    """Datetimes as ISO 8601 in the JSON lines."""
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)
