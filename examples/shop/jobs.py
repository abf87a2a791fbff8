"""examples/shop background jobs: the proposal's ``send_email`` and ``daily_report``.

Run a worker and the scheduler on them with ``zephyr jobs worker -A examples.shop.jobs``
and ``zephyr jobs scheduler -A examples.shop.jobs`` (``zephyr up -A examples.shop.jobs``
starts both, plus Flower). ``app`` is the Celery app the jobs are on, where Celery's own
CLI looks for it: ``celery -A examples.shop.jobs inspect ping`` works as it does on any
Celery project (or ``zephyr jobs celery -A examples.shop.jobs -- inspect ping``, which also
finds ``zephyr up``'s embedded Valkey). ``router`` adds ``POST /send-email`` and
``GET /jobs/{job_id}`` to the shop app.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel

from zephyr_celery import JobFailed, JobHandle, get_app, job, scheduler

logger = logging.getLogger(__name__)

router = APIRouter()

#: The app every ``@job`` here registers on (``celery -A examples.shop.jobs`` finds it).
app = get_app()


@job
async def send_email(to: str, subject: str, body: str) -> dict[str, str]:
    """Send an email in the background (the example logs it instead of using SMTP)."""
    logger.info("sending %r to %s (%d characters)", subject, to, len(body))
    return {"status": "sent", "to": to}


@scheduler.cron("0 9 * * *")  # every day at 09:00 UTC
async def daily_report() -> None:
    """Email the daily report to the admin."""
    today = datetime.now(UTC).date().isoformat()
    await send_email(to="admin@example.com", subject="Daily Report", body=f"Report for {today}")


class EmailData(BaseModel):
    """The body of ``POST /send-email``."""

    to: str
    subject: str
    body: str


@router.post("/send-email")
async def send_email_endpoint(email_data: EmailData) -> dict[str, str]:
    """Queue an email; the answer carries the job id to follow it with."""
    job_id = await send_email.delay(
        to=email_data.to, subject=email_data.subject, body=email_data.body
    )
    return {"job_id": job_id, "status": "queued"}


@router.get("/jobs/{job_id}")
async def job_status(job_id: str) -> dict[str, object]:
    """A job's state, with its result once it succeeded or its error once it failed.

    ``PENDING`` also stands for an id nobody enqueued (or whose result expired).
    """
    handle: JobHandle[object] = JobHandle(job_id)
    state = await handle.status()
    answer: dict[str, object] = {"job_id": job_id, "status": state}
    if state == "SUCCESS":
        answer["result"] = await handle.wait(timeout=5)
    elif state == "FAILURE":
        try:
            await handle.wait(timeout=5)
        except JobFailed as exc:
            answer["error"] = f"{exc.exc_type}: {exc.exc_message}"
    return answer
