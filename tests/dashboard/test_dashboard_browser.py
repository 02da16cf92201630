"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright with
`executable_path`; Playwright's own browser download is never used). The app runs under
uvicorn in the test's event loop, with real Redis and a real `Worker`.

Skipped only when no chromium binary (or no playwright package) exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from dash_helpers import CHROMIUM_ARGS, HANG, TOKEN, chromium_path, serve, wait_for
from starlette.applications import Starlette

from jobqueue import Job, Queue, Worker

CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary (apt-get install chromium): browser tests skipped"
)
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright not installed")

MS = int(HANG * 1000)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


# tests take `site` before `browser`: the browser closes first, so that no event stream holds
# the server's shutdown
@pytest.fixture
async def site(make_app: Callable[..., Starlette]) -> AsyncIterator[str]:
    async with serve(make_app()) as url:
        yield url


async def _signed_in(browser: Any, url: str) -> Any:
    """A page of a browser context signed in through the login form."""
    context = await browser.new_context()
    context.set_default_timeout(MS)
    page = await context.new_page()
    await page.goto(url + "/")
    assert "/login" in page.url
    await page.fill("input[name=token]", TOKEN)
    await page.click("main form button[type=submit]")
    await page.wait_for_url(url + "/")
    return page


async def _live(page: Any) -> None:
    await page.wait_for_selector("body[data-live=on]")


async def test_pages_render_with_real_data(
    site: str,
    browser: Any,
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
) -> None:
    queue = make_queue("shop")
    gate = asyncio.Event()

    async def handler(job: Job) -> Any:
        await job.log("working on it")
        if job.name == "slow":
            await gate.wait()
        return {"total": 3}

    done = await queue.add("order", {"sku": "A-1"})
    run_worker(queue, handler, name="browser-worker", concurrency=2)
    await done.wait_until_finished(timeout=HANG)
    slow = await queue.add("slow", {})
    await wait_for(lambda: _state_is(queue, slow.id, "active"), what="the slow job to start")
    await queue.add("later", {}, delay=3600)
    page = await _signed_in(browser, site)
    assert await page.inner_text("#queues") != ""
    assert await page.inner_text("[data-count='shop|completed']") == "1"
    assert await page.inner_text("[data-count='shop|delayed']") == "1"
    await page.click("a[href='/queues/shop']")
    await page.click("a[href$='?state=completed']")
    await page.click(f"a[href='/queues/shop/jobs/{done.id}']")
    assert '"total": 3' in await page.inner_text("#job-result")
    assert "working on it" in await page.inner_text("#job-log")
    assert "completed" in await page.inner_text("#timeline")
    await page.click("nav >> text=Workers")
    row = await page.inner_text("#workers")
    assert "browser-worker" in row and f"shop:{slow.id}" in row
    gate.set()


async def _state_is(queue: Queue, job_id: str, wanted: str) -> bool:
    return str(await queue.get_job_state(job_id)) == wanted


async def test_a_failed_job_is_retried_by_clicking_and_completes(
    site: str,
    browser: Any,
    make_queue: Callable[..., Queue],
    run_worker: Callable[..., Worker],
) -> None:
    queue = make_queue("retry", attempts=1)
    failures = [1]

    async def handler(job: Job) -> Any:
        if failures:
            failures.pop()
            raise RuntimeError("the first run fails")
        return "second time lucky"

    job = await queue.add("flaky", {})
    run_worker(queue, handler)
    await wait_for(lambda: _state_is(queue, job.id, "failed"), what="the failure")
    page = await _signed_in(browser, site)
    await page.goto(f"{site}/queues/retry/jobs/{job.id}")
    assert "the first run fails" in await page.inner_text(".error-message")
    # dismissing the confirmation does nothing
    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.click("[data-action=retry]")
    assert await _state_is(queue, job.id, "failed")
    page.once("dialog", lambda dialog: dialog.accept())
    async with page.expect_navigation():
        await page.click("[data-action=retry]")
    assert "moved back to waiting" in await page.inner_text(".flash")
    await wait_for(lambda: _state_is(queue, job.id, "completed"), what="the retried job")
    # and the page follows it live (server-sent events), without a reload
    await page.wait_for_selector(f"[data-job-state='retry|{job.id}']:text('completed')")


async def test_live_counts_change_without_a_reload(
    site: str, browser: Any, make_queue: Callable[..., Queue]
) -> None:
    queue = make_queue("live")
    await queue.add("a", {})
    page = await _signed_in(browser, site)
    await _live(page)
    await page.evaluate("window.__sameDocument = true")
    assert await page.inner_text("[data-count='live|waiting']") == "1"
    for _ in range(2):
        await queue.add("b", {})
    # (the page's CSP forbids eval: waits use selectors, not wait_for_function)
    await page.wait_for_selector("[data-count='live|waiting']:text-is('3')")
    assert not await page.is_visible("[data-paused=live]")
    await queue.pause()
    await page.wait_for_selector("[data-paused=live]", state="visible")
    assert await page.evaluate("window.__sameDocument") is True  # no reload happened


async def test_an_action_without_the_token_or_the_csrf_value_is_refused(
    site: str, browser: Any, make_queue: Callable[..., Queue]
) -> None:
    queue = make_queue("guard")
    job = await queue.add("a", {}, delay=3600)
    page = await _signed_in(browser, site)
    await page.goto(f"{site}/queues/guard/jobs/{job.id}")
    action = f"/queues/guard/jobs/{job.id}/promote"
    status = await page.evaluate(
        "async (url) => (await fetch(url, {method: 'POST', body: new URLSearchParams("
        "{confirmed: '1'})})).status",
        action,
    )
    assert status == 403  # signed in, but no CSRF value
    # a form whose CSRF value was tampered with, submitted by clicking
    await page.evaluate("document.querySelector(\"input[name='csrf']\").value = 'forged'")
    for form in await page.query_selector_all("form[data-confirm] input[name=csrf]"):
        await form.evaluate("(el) => { el.value = 'forged'; }")
    page.once("dialog", lambda dialog: dialog.accept())
    async with page.expect_navigation():
        await page.click("[data-action=promote]")
    assert "CSRF" in await page.inner_text(".error-detail")
    # another browser, without the token: refused before anything else
    stranger = await (await browser.new_context()).new_page()
    await stranger.goto(site + "/login")
    csrf = await page.evaluate("document.querySelector('meta[name=csrf-token]').content")
    status = await stranger.evaluate(
        "async ([url, csrf]) => (await fetch(url, {method: 'POST', body: new URLSearchParams("
        "{confirmed: '1', csrf: csrf})})).status",
        [action, csrf],
    )
    assert status == 401
    assert await _state_is(queue, job.id, "delayed")


async def test_a_script_in_the_payload_is_shown_as_text(
    site: str, browser: Any, make_queue: Callable[..., Queue]
) -> None:
    queue = make_queue("xss")
    payload = "<script>window.__xss = 1</script><img src=x onerror='window.__xss = 2'>"
    job = await queue.add("<b onmouseover='window.__xss=3'>x</b>", {"html": payload})
    page = await _signed_in(browser, site)
    await page.goto(f"{site}/queues/xss/jobs/{job.id}")
    assert "<script>window.__xss = 1</script>" in await page.inner_text("#job-data")
    await page.goto(f"{site}/queues/xss?state=waiting")
    await page.hover("#jobs td:nth-child(2)")
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("#jobs script, #jobs img, #jobs b").count() == 0
