"""The dashboard's pages (GET): overview, a queue with its jobs by state, a job, the workers,
the lookup by id, and the login form."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..core.redact import redact
from ..queue import Queue
from ._data import STATES, job_page, list_jobs, now_ms, queue_view
from ._data import workers as read_workers
from ._render import render
from ._security import (
    auth_cookie_headers,
    csrf_ok,
    local_path,
    logout_cookie_headers,
    read_form,
)
from ._state import Dashboard

__all__ = ["job", "login", "login_form", "logout", "lookup", "overview", "queue_page", "workers"]

DONE = {
    "retry": "The job was moved back to waiting.",
    "remove": "The job was removed.",
    "cancel": "The job was cancelled.",
    "promote": "The job was promoted: it waits to run now.",
    "pause": "The queue was paused.",
    "resume": "The queue was resumed.",
    "clean": "Old jobs were removed.",
    "retry-failed": "The failed jobs were moved back to waiting.",
}
"""The message shown after an action (`?done=<action>`: a fixed text, never a reflected one)."""


def _dash(request: Request) -> Dashboard:
    dash: Dashboard = request.app.state.dashboard
    return dash


async def _queue_or_404(request: Request) -> Queue:
    name = request.path_params["queue"]
    queue = await _dash(request).queue(name)
    if queue is None:
        raise HTTPException(404, f"no queue {name!r}")
    return queue


def _done(request: Request) -> str | None:
    return DONE.get(request.query_params.get("done", ""))


async def overview(request: Request) -> Response:
    """Every queue: counts by state, last hour, paused/limited, limiters and breakers."""
    dash = _dash(request)
    now = await now_ms(dash)
    views = [await queue_view(dash, q, now) for q in await dash.queues()]
    limiters = {}
    for view in views:
        shared = view.limits.shared
        if shared is not None:
            limiters[shared.name] = shared
    return render(
        request,
        "overview.html",
        {
            "nav": "overview",
            "queues": views,
            "limiters": [limiters[k] for k in sorted(limiters)],
            "states": STATES,
            "done": _done(request),
        },
    )


def _int_param(request: Request, name: str, default: int, top: int) -> int:
    try:
        value = int(request.query_params.get(name, default))
    except ValueError:
        return default
    return min(max(value, 0), top)


async def queue_page(request: Request) -> Response:
    """One queue: counts, limits, actions, and its jobs of one state, a page at a time."""
    dash = _dash(request)
    queue = await _queue_or_404(request)
    state = request.query_params.get("state", "failed")
    if state not in STATES:
        raise HTTPException(400, "unknown state")
    size = dash.options.page_size
    page = _int_param(request, "page", 0, 10_000 // size)
    view = await queue_view(dash, queue, await now_ms(dash))
    jobs = await list_jobs(queue, state, page, size)
    total = view.counts.get(state, 0)
    return render(
        request,
        "queue.html",
        {
            "nav": "overview",
            "q": view,
            "state": state,
            "states": STATES,
            "jobs": jobs,
            "page": page,
            "pages": max(1, -(-total // size)),
            "done": _done(request),
        },
    )


async def job(request: Request) -> Response:
    """One job: data, result, progress, attempts, error, logs, timeline, flow."""
    dash = _dash(request)
    queue = await _queue_or_404(request)
    found = await queue.get_job(request.path_params["job_id"])
    if found is None:
        raise HTTPException(404, "no such job")
    context = await job_page(dash, queue, found)
    context.update({"nav": "overview", "done": _done(request)})
    return render(request, "job.html", context)


async def lookup(request: Request) -> Response:
    """`/jobs?id=...[&queue=...]`: the job page of the first queue holding that id."""
    dash = _dash(request)
    job_id = request.query_params.get("id", "").strip()
    wanted = request.query_params.get("queue", "").strip()
    names = [wanted] if wanted else await dash.queue_names()
    if job_id:
        for name in names:
            queue = await dash.queue(name)
            if queue is not None and await queue.get_job_state(job_id) is not None:
                url = request.url_for("job", queue=name, job_id=job_id)
                return RedirectResponse(str(url.path), status_code=303)
    return render(
        request,
        "lookup.html",
        {"nav": "overview", "job_id": job_id, "queue": wanted},
        status_code=404 if job_id else 200,
    )


async def workers(request: Request) -> Response:
    """The live workers (heartbeats) and what each runs."""
    return render(
        request, "workers.html", {"nav": "workers", "workers": await read_workers(_dash(request))}
    )


async def login_form(request: Request) -> Response:
    """The login form (a token field)."""
    return render(
        request, "login.html", {"next": request.query_params.get("next", ""), "error": ""}
    )


async def login(request: Request) -> Response:
    """Check the token; on success set the session cookies and go where the user was going."""
    dash = _dash(request)
    form = await read_form(request)
    given = str(form.get("token", ""))
    target = str(form.get("next", ""))
    if not csrf_ok(request, str(form.get("csrf", ""))):
        return render(
            request,
            "login.html",
            {"next": target, "error": "The form expired: please try again."},
            status_code=403,
        )
    if not dash.auth or not dash.token_matches(given):
        return render(
            request, "login.html", {"next": target, "error": "Wrong token."}, status_code=401
        )
    root = request.scope.get("root_path", "")
    response = RedirectResponse(local_path(request, target, root + "/"), status_code=303)
    for key, value in auth_cookie_headers(request, dash):
        response.raw_headers.append((key, value))
    return response


async def logout(request: Request) -> Response:
    """End the session (a POST with the CSRF token)."""
    form = await read_form(request)
    if not csrf_ok(request, str(form.get("csrf", ""))):
        raise HTTPException(403, "missing or wrong CSRF token")
    root = request.scope.get("root_path", "")
    response = RedirectResponse(root + "/login", status_code=303)
    for key, value in logout_cookie_headers(request):
        response.raw_headers.append((key, value))
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    """Errors as a page (their text redacted)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return render(
        request, "error.html", {"status": status, "detail": redact(str(detail))}, status_code=status
    )
