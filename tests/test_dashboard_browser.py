"""The dashboard in a real browser (Debian's Chromium driven by Playwright) on demo data: log in, every page, every
figure drawn with data, a filter that changes them, a transcript, payloads that try to run script, logout.
Screenshots of each page go to test-artifacts/dashboard/."""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tally.server.demo_data import load_demo
from tests.conftest import wait_until
from tests.dashboard_support import CHROMIUM, CHROMIUM_ARGS, EMAIL, PASSWORD, add_account, start_dashboard
from tests.payloads import openai_chat

ARTIFACTS = Path(__file__).parents[1] / "test-artifacts" / "dashboard"
SCRIPT_TAG = "<script>window.__pwned = 'script'</script>"
BROKEN_OUT = '"><img src=x onerror="window.__pwned=\'img\'">'

if not os.path.exists(CHROMIUM):
    if os.environ.get("TALLY_TEST_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium package")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def demo_server(engine, settings, app_keys):
    load_demo(engine, settings, interactions=600, days=10)
    add_account(engine)
    server = start_dashboard(settings)
    hostile = openai_chat(app_keys, user={"userId": "mallory", "firstName": BROKEN_OUT, "lastName": SCRIPT_TAG},
                          text=f"Please summarise {SCRIPT_TAG} and {BROKEN_OUT}", model=f"gpt-4o{BROKEN_OUT}",
                          session=f"chat{BROKEN_OUT}")
    hostile["response"]["choices"][0]["message"]["content"] = f"Sure: {SCRIPT_TAG}"
    with httpx.Client(base_url=server.url) as http:
        stored = http.post("/track", json=hostile).json()
    server.hostile = stored
    yield server
    server.stop()


@pytest.fixture
def page(demo_server, settings):
    folder = ARTIFACTS / ("postgresql" if settings.database_url.startswith("postgres") else "sqlite")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000}, base_url=demo_server.url)
        tab.problems, tab.dialogs, tab.folder = [], [], folder
        tab.on("pageerror", lambda error: tab.problems.append(f"page error: {error}"))
        tab.on("console", lambda message: message.type == "error" and tab.problems.append(message.text))
        tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
        yield tab
        browser.close()


def _visit(page, path: str, shot: str) -> None:
    page.goto(path)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=page.folder / f"{shot}.png", full_page=True)


def _figures(page) -> list[dict]:
    """Each drawn Plotly figure: its title and how many points its traces hold."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
        title: el.layout.title.text,
        points: el.data.reduce((n, t) => n + Math.max((t.x || []).length, (t.y || []).length), 0),
        total: el.data.reduce((n, t) => n + (t.y || []).reduce((a, b) => a + (typeof b === 'number' ? b : 0), 0), 0)
    }))""")


def _assert_drawn_with_data(page, count: int) -> list[dict]:
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {count}")
    drawn = _figures(page)
    assert len(drawn) == count and all(figure["points"] > 0 for figure in drawn), drawn
    return drawn


def _assert_inert(page) -> None:
    assert page.evaluate("window.__pwned") is None and page.dialogs == []


def test_an_analyst_walks_through_the_dashboard(page, demo_server):
    page.goto("/dashboard/models")
    assert "/login" in page.url
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/dashboard/models")
    page.goto("/dashboard")
    wait_until(lambda: page.reload() or "No interactions" not in page.content(), seconds=10)

    _visit(page, "/dashboard", "overview")
    overview = _assert_drawn_with_data(page, 5)
    assert page.locator(".tile").count() == 7
    _assert_inert(page)

    assert page.locator("#model-choices option[value='claude-3-5-sonnet-20241022']").count() == 1
    page.fill("input[name=model]", "claude-3-5-sonnet-20241022")
    page.press("input[name=model]", "Enter")
    page.wait_for_url("**model=claude-3-5-sonnet-20241022**")
    page.wait_for_load_state("networkidle")
    filtered = _assert_drawn_with_data(page, 5)
    assert filtered[0]["total"] < overview[0]["total"]
    assert page.locator("input[name=model]").input_value() == "claude-3-5-sonnet-20241022"
    page.screenshot(path=page.folder / "overview-filtered.png", full_page=True)

    _visit(page, "/dashboard?range=24h", "overview-24h")  # by the hour: one place on the axis for each hour
    _assert_drawn_with_data(page, 5)
    assert page.evaluate("document.querySelector('.js-plotly-plot').layout.xaxis.type") == "category"
    assert page.problems == []

    _visit(page, "/dashboard/models", "models")
    _assert_drawn_with_data(page, 1)
    assert page.get_by_text("unpriced model").count() >= 1
    _assert_inert(page)

    _visit(page, "/dashboard/users?sort=tokens", "users")
    page.fill("input[name=search]", "mallory")
    page.click("form.search button")
    page.wait_for_load_state("networkidle")
    assert page.locator("table.data tbody tr").count() == 1
    _assert_inert(page)
    page.click("table.data tbody tr a")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=page.folder / "user.png", full_page=True)
    _assert_drawn_with_data(page, 1)
    assert page.get_by_text(SCRIPT_TAG).count() >= 1  # the name, shown as text
    _assert_inert(page)

    _visit(page, "/dashboard/sessions", "sessions")
    assert page.locator("table.data tbody tr").count() > 10
    page.click("table.data tbody tr:nth-child(2) a")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=page.folder / "transcript.png", full_page=True)
    roles = page.locator(".transcript .message .role").all_inner_texts()
    assert {"USER", "ASSISTANT"} <= {role.upper() for role in roles}

    _visit(page, f"/dashboard/sessions/{demo_server.hostile['session_id']}", "transcript-hostile")
    assert page.get_by_text(f"Please summarise {SCRIPT_TAG} and {BROKEN_OUT}").count() == 1
    assert page.get_by_text(f"Sure: {SCRIPT_TAG}").count() == 1
    _assert_inert(page)
    page.click("text=raw JSON")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=page.folder / "interaction.png", full_page=True)
    assert page.locator("pre.json").count() == 2 and SCRIPT_TAG in page.locator("pre.json").first.inner_text()
    _assert_inert(page)

    _visit(page, "/dashboard/interactions", "interactions")
    assert page.locator("table.data tbody tr").count() == 50
    page.click("text=Next page")
    page.wait_for_load_state("networkidle")
    assert page.locator("table.data tbody tr").count() == 50
    _assert_inert(page)

    _visit(page, "/dashboard/exports?range=7d", "exports")
    with page.expect_download() as download:
        page.click("text=interactions.csv")
    assert download.value.suggested_filename.startswith("interactions_")
    assert "id,request_at" in Path(download.value.path()).read_text().splitlines()[0]

    page.click("text=Log out")
    page.wait_for_url("**/login**")
    page.goto("/dashboard")
    assert "/login" in page.url
    assert page.problems == []
