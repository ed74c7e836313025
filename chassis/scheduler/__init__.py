"""Scheduled jobs that run once per scheduled time across every worker and replica.

Declare jobs on a `Registry` (app/jobs.py holds the service's own); a `Scheduler` in each
gunicorn worker (or one `flask scheduler run` process) computes the due times, and the
database decides who runs each one: the unique (job, scheduled_at) row in `job_runs` is
inserted by exactly one process, which holds a lease on it while the job runs; every lease
time is the database's clock, and a job's work commits only while its process holds the
run (`Run` states the contract). docs/scheduler.md: "Scheduled jobs".
"""

from chassis.scheduler.lease import LeaseLost
from chassis.scheduler.registry import Job, Registry, Run
from chassis.scheduler.runner import Scheduler

__all__ = ["Job", "LeaseLost", "Registry", "Run", "Scheduler"]
