"""The dashboard's security: token (bearer or login cookie), CSRF on every POST, read-only
mode, escaping, CSP, redaction, and the CLI's refusal of `--no-auth` off 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx2
import pytest
from dash_helpers import TOKEN
from starlette.applications import Starlette

from jobqueue import ConfigError, Queue
from jobqueue.dashboard import create_app, main

MakeApp = Callable[..., Starlette]
ClientFor = Callable[..., httpx2.AsyncClient]


def csrf_of(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def test_without_the_token_pages_redirect_to_login_and_the_rest_is_401(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    await make_queue("sec").add("a", {})
    client = client_for(make_app(), auth=False)
    page = await client.get("/queues/sec", headers={"accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fqueues%2Fsec"
    for path in ("/queues/sec", "/events", "/metrics", "/workers"):
        assert (await client.get(path)).status_code == 401, path
    wrong = await client.get("/", headers={"authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert (await client.get("/static/dashboard.js")).status_code == 200


async def test_login_sets_a_strict_httponly_session_bound_to_the_browser(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    await make_queue("sec").add("a", {})
    client = client_for(make_app(), auth=False)
    form = await client.get("/login?next=/queues/sec")
    assert form.status_code == 200
    csrf = csrf_of(form.text)
    bad = await client.post("/login", data={"token": "nope", "csrf": csrf, "next": "/"})
    assert bad.status_code == 401
    no_csrf = await client.post("/login", data={"token": TOKEN, "next": "/"})
    assert no_csrf.status_code == 403
    ok = await client.post("/login", data={"token": TOKEN, "csrf": csrf, "next": "/queues/sec"})
    assert ok.status_code == 303 and ok.headers["location"] == "/queues/sec"
    cookies = ok.headers.get_list("set-cookie")
    assert all("HttpOnly" in c and "SameSite=Strict" in c for c in cookies)
    assert not any(TOKEN in c for c in cookies)  # the token itself is never stored
    assert (await client.get("/queues/sec")).status_code == 200
    # an open redirect is refused
    page = await client.get("/")
    evil = await client.post(
        "/login", data={"token": TOKEN, "csrf": csrf_of(page.text), "next": "//evil.example/"}
    )
    assert evil.headers["location"] == "/"
    # a forged cookie (another browser's proof) does not authenticate
    other = client_for(make_app(), auth=False)
    other.cookies.set("jqd_id", "forged")
    other.cookies.set("jqd_auth", client.cookies.get("jqd_auth") or "")
    assert (await other.get("/")).status_code == 401


async def test_an_action_without_or_with_a_wrong_csrf_token_is_refused(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    queue = make_queue("csrf")
    job = await queue.add("a", {}, delay=3600)
    client = client_for(make_app())
    csrf = csrf_of((await client.get(f"/queues/csrf/jobs/{job.id}")).text)
    url = f"/queues/csrf/jobs/{job.id}/promote"
    assert (await client.post(url, data={"confirmed": "1"})).status_code == 403
    assert (await client.post(url, data={"confirmed": "1", "csrf": "0" * 64})).status_code == 403
    # the right token from another browser (no id cookie) is refused too
    stranger = client_for(make_app())
    assert (await stranger.post(url, data={"confirmed": "1", "csrf": csrf})).status_code == 403
    # and without the bearer token, CSRF alone is not enough
    anonymous = client_for(make_app(), auth=False)
    assert (await anonymous.post(url, data={"confirmed": "1", "csrf": csrf})).status_code == 401
    assert str(await queue.get_job_state(job.id)) == "delayed"
    done = await client.post(url, data={"confirmed": "1", "csrf": csrf})
    assert done.status_code == 303
    assert str(await queue.get_job_state(job.id)) == "waiting"


async def test_read_only_refuses_and_hides_actions(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    queue = make_queue("ro")
    job = await queue.add("a", {}, delay=3600)
    client = client_for(make_app(read_only=True))
    page = (await client.get(f"/queues/ro/jobs/{job.id}")).text
    assert "data-action=" not in page and "read-only" in page
    assert "data-action=" not in (await client.get("/queues/ro")).text
    csrf = csrf_of(page)
    for url in (f"/queues/ro/jobs/{job.id}/remove", "/queues/ro/action/pause"):
        refused = await client.post(url, data={"confirmed": "1", "csrf": csrf})
        assert refused.status_code == 403, url
    assert str(await queue.get_job_state(job.id)) == "delayed"
    assert not await queue.is_paused()


async def test_job_data_is_escaped_under_a_strict_csp(
    make_queue: Callable[..., Queue], make_app: MakeApp, client_for: ClientFor
) -> None:
    queue = make_queue("xss")
    job = await queue.add("<img src=x onerror=alert(1)>", {"html": "<script>alert(1)</script>"})
    response = await client_for(make_app()).get(f"/queues/xss/jobs/{job.id}")
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "<img src=x" not in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in re.sub(r'<script src="[^"]+" defer></script>', "", response.text)


async def test_the_redis_password_is_never_shown(make_app: MakeApp, client_for: ClientFor) -> None:
    app = make_app(redis="redis://user:s3cret-pw@127.0.0.1:1/0")
    page = (await client_for(app, auth=False).get("/login")).text
    assert "s3cret-pw" not in page
    assert "redis://user:***@127.0.0.1:1/0" in page


def test_tokens_are_required_and_checked(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="token is None"):
        create_app(redis=redis_url, token=None)
    with pytest.raises(ConfigError, match="at least 8"):
        create_app(redis=redis_url, token="short")
    with pytest.raises(ConfigError, match="not both"):
        create_app(redis=redis_url, token=TOKEN, no_auth=True)


def test_the_cli_refuses_no_auth_off_localhost(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--no-auth", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--no-auth is only allowed bound to 127.0.0.1" in err
    assert main(["--host", "127.0.0.1"]) == 2
    assert "give --token" in capsys.readouterr().err
    assert main(["--token", TOKEN, "--plugin", "no.such.module:plugin"]) == 2
    assert "cannot import" in capsys.readouterr().err
