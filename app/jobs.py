"""The service's scheduled jobs: the chassis's history purge first, then yours, declared on
`jobs` the same way.

SCHEDULER_ENABLED=true runs them (docs/scheduler.md: "Scheduled jobs"); SCHEDULER_JOBS points at
another registry if you keep yours elsewhere.
"""

from __future__ import annotations

import datetime as dt
import logging

from chassis.scheduler import Registry, Run
from chassis.scheduler.lease import purge
from chassis.settings import get_settings

log = logging.getLogger(__name__)
jobs = Registry()


@jobs.cron("purge-job-history", "17 3 * * *")
def purge_job_history(run: Run) -> None:
    """Delete job history older than SCHEDULER_HISTORY_DAYS (daily at 03:17 UTC)."""
    settings = get_settings()
    before = run.scheduled_at - dt.timedelta(days=settings.scheduler_history_days)
    deleted = purge(run.session, before)
    log.info("purged %s job runs scheduled before %s", deleted, before.isoformat())
