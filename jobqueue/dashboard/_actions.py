"""The dashboard's actions (POST): retry, remove, cancel and promote a job; pause, resume,
clean and retry the failed jobs of a queue.

Each is refused (403) in read-only mode and without this browser's CSRF token, and needs a
confirmation: the page's script asks (`confirm()`) and sends `confirmed=1`; without it (no
script) the server answers with a confirmation page whose button sends the same form again
with `confirmed=1`.
"""

from __future__ import annotations

import logging
import math

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..core.redact import redact
from ..errors import JobQueueError
from ..queue import Queue
from ._render import render
from ._security import csrf_ok, local_path, read_form
from ._state import Dashboard

__all__ = ["JOB_ACTIONS", "QUEUE_ACTIONS", "job_action", "queue_action"]

log = logging.getLogger(__name__)

JOB_ACTIONS = {
    "retry": "Retry job {job} of queue {queue}?",
    "remove": "Remove job {job} of queue {queue}? Its data, result and log are deleted.",
    "cancel": "Cancel job {job} of queue {queue}? A running job is stopped; it is not retried.",
    "promote": "Run delayed job {job} of queue {queue} now?",
}
QUEUE_ACTIONS = {
    "pause": "Pause queue {queue}? Running jobs finish; no job starts until it is resumed.",
    "resume": "Resume queue {queue}?",
    "clean": "Remove the {state} jobs of queue {queue} older than {grace} seconds?",
    "retry-failed": "Move every failed job of queue {queue} back to waiting?",
}
_CLEAN_STATES = ("completed", "failed", "waiting", "delayed")


async def _guard(request: Request) -> tuple[Dashboard, FormData]:
    """Refuse in read-only mode or without the CSRF token; the form otherwise."""
    dash: Dashboard = request.app.state.dashboard
    if dash.read_only:
        raise HTTPException(403, "the dashboard is read-only")
    form = await read_form(request)
    given = str(form.get("csrf", "")) or request.headers.get("x-csrf-token", "")
    if not csrf_ok(request, given):
        raise HTTPException(403, "missing or wrong CSRF token")
    return dash, form


async def _queue(dash: Dashboard, name: str) -> Queue:
    queue = await dash.queue(name)
    if queue is None:
        raise HTTPException(404, f"no queue {name!r}")
    return queue


def _confirm(request: Request, form: FormData, question: str) -> Response:
    fields = [(k, str(v)) for k, v in form.multi_items() if k not in ("csrf", "confirmed")]
    return render(
        request,
        "confirm.html",
        {"question": question, "action": request.url.path, "fields": fields},
    )


def _back(request: Request, form: FormData, default: str, done: str) -> Response:
    target = local_path(request, str(form.get("next", "")), default)
    target = target.split("?", 1)[0] + f"?done={done}"
    return RedirectResponse(target, status_code=303)


def _refused(request: Request, exc: JobQueueError) -> Response:
    return render(
        request, "error.html", {"status": 409, "detail": redact(str(exc))}, status_code=409
    )


async def job_action(request: Request) -> Response:
    """Retry, remove, cancel or promote one job."""
    dash, form = await _guard(request)
    action = request.path_params["action"]
    if action not in JOB_ACTIONS:
        raise HTTPException(404, "unknown action")
    queue = await _queue(dash, request.path_params["queue"])
    job_id = request.path_params["job_id"]
    if form.get("confirmed") != "1":
        return _confirm(request, form, JOB_ACTIONS[action].format(job=job_id, queue=queue.name))
    try:
        if action == "retry":
            await queue.retry_job(job_id)
        elif action == "remove":
            if not await queue.remove(job_id):
                raise HTTPException(404, "no such job")
        elif action == "cancel":
            await queue.cancel(job_id, "cancelled from the dashboard")
        else:
            await queue.promote(job_id)
    except JobQueueError as exc:
        return _refused(request, exc)
    log.info("dashboard: %s of job %s of queue %s", action, job_id, queue.name)
    if action == "remove":
        default = str(request.url_for("queue", queue=queue.name).path)
    else:
        default = str(request.url_for("job", queue=queue.name, job_id=job_id).path)
    return _back(request, form, default, action)


def _grace(form: FormData) -> float:
    try:
        grace = float(str(form.get("grace", "")))
    except ValueError:
        raise HTTPException(400, "grace must be a number of seconds") from None
    if not math.isfinite(grace) or grace < 0:
        raise HTTPException(400, "grace must be a number of seconds >= 0")
    return grace


async def queue_action(request: Request) -> Response:
    """Pause, resume, clean or retry the failed jobs of a queue."""
    dash, form = await _guard(request)
    action = request.path_params["action"]
    if action not in QUEUE_ACTIONS:
        raise HTTPException(404, "unknown action")
    queue = await _queue(dash, request.path_params["queue"])
    state, grace = "", 0.0
    if action == "clean":
        state = str(form.get("state", ""))
        if state not in _CLEAN_STATES:
            raise HTTPException(400, f"clean state must be one of {', '.join(_CLEAN_STATES)}")
        grace = _grace(form)
    if form.get("confirmed") != "1":
        question = QUEUE_ACTIONS[action].format(queue=queue.name, state=state, grace=f"{grace:g}")
        return _confirm(request, form, question)
    try:
        if action == "pause":
            await queue.pause()
        elif action == "resume":
            await queue.resume()
        elif action == "clean":
            await queue.clean(state, grace, limit=10_000)
        else:
            await queue.retry_failed()
    except JobQueueError as exc:
        return _refused(request, exc)
    log.info("dashboard: %s of queue %s", action, queue.name)
    return _back(request, form, str(request.url_for("queue", queue=queue.name).path), action)
