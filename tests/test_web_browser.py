"""The web page in real headless Chromium (Debian's package), driven by Playwright, against `auditctl serve`."""

from __future__ import annotations

import csv
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from helpers import events
from test_web_viewer import start_server, stop_server, wait_for_port
from webhelpers import SCRIPT_VALUE, TOKEN, move_events_back, seed_audit_log, seed_busy_month, utc_now

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# Flags that let Chromium run as root in a container with no network but loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium "
                                                     "(apt-get install chromium)"),
]

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def site(pg) -> Iterator[tuple[str, str]]:
    """`auditctl serve` on 127.0.0.1 over a seeded log, twelve events per page; yields its URL and DSN."""
    name = pg.create_database()
    dsn = pg.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True) as connection:
        seed_audit_log(connection)
        move_events_back(connection, "bob", days=3)
        seed_busy_month(connection)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = start_server(dsn, port, "--page-size", "12")
    try:
        wait_for_port(process, port)
        yield f"http://127.0.0.1:{port}", dsn
    finally:
        stop_server(process)
        pg.drop_database(name)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, site):
    """A fresh browser profile in Moscow time with an English locale, logged in."""
    url, _dsn = site
    context = browser.new_context(timezone_id="Europe/Moscow", locale="en-US", accept_downloads=True,
                                  viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.goto(url + "/")
    tab.fill("#token", TOKEN)
    tab.click("button[type=submit]")
    tab.wait_for_selector("table.events")
    tab.errors = errors
    yield tab
    context.close()


def shown_users(tab) -> list[str]:
    return tab.locator("table.events tbody tr td:nth-child(2)").all_inner_texts()


def test_login_shows_events_and_screenshot(page, site):
    assert page.locator("h1", has_text="Events").is_visible()
    assert "Time zone: Europe/Moscow" in page.inner_text(".topnav")
    assert page.locator("svg.chart rect.bar").count() == 30
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-main.png"), full_page=True)
    assert page.errors == []


def test_wrong_token_shows_error(browser, site):
    url, _dsn = site
    context = browser.new_context()
    tab = context.new_page()
    tab.goto(url + "/login")
    tab.fill("#token", "not-the-token-at-all")
    with tab.expect_response(lambda response: response.url.endswith("/login")) as answer:
        tab.click("button[type=submit]")
    assert answer.value.status == 401
    assert tab.inner_text(".alert") == "Wrong access token."
    context.close()


def test_filter_by_user_and_date(page, site):
    url, _dsn = site
    page.fill("#f-user", "bob")
    page.click("button.primary")
    page.wait_for_url("**/?user=bob*")
    assert shown_users(page) == ["bob", "bob"]

    # bob's events are three days old, so a range that ends two days ago keeps them.
    moscow = ZoneInfo("Europe/Moscow")
    page.fill("#f-from", (utc_now() - timedelta(days=4)).astimezone(moscow).strftime("%Y-%m-%dT%H:%M:%S"))
    page.fill("#f-to", (utc_now() - timedelta(days=2)).astimezone(moscow).strftime("%Y-%m-%dT%H:%M:%S"))
    page.click("button.primary")
    page.wait_for_url("**from=*")
    assert shown_users(page) == ["bob", "bob"]

    page.fill("#f-user", "")
    page.fill("#f-from", (utc_now() - timedelta(days=2)).astimezone(moscow).strftime("%Y-%m-%dT%H:%M:%S"))
    page.fill("#f-to", "")
    page.click("button.primary")
    page.wait_for_load_state()
    assert "bob" not in shown_users(page)
    assert shown_users(page)


def test_page_forward_and_back(page, site):
    _url, dsn = site
    first = page.locator("td.time a").all_inner_texts()
    seen = [first]
    while page.locator("a[rel=next]").count():
        page.click("a[rel=next]")
        page.wait_for_load_state()
        seen.append(page.locator("td.time a").all_inner_texts())
    assert len(seen) >= 3
    assert all(len(rows) == 12 for rows in seen[:-1])
    with psycopg.connect(dsn) as connection:
        assert sum(len(rows) for rows in seen) == len(events(connection, system=True))

    page.click("a[rel=prev]")
    page.wait_for_load_state()
    assert page.locator("td.time a").all_inner_texts() == seen[-2]
    while page.locator("a[rel=prev]").count():
        page.click("a[rel=prev]")
        page.wait_for_load_state()
    assert page.locator("td.time a").all_inner_texts() == first


def test_open_event_shows_old_and_new(page, site):
    page.goto(page.url.split("?")[0] + "?user=bob&action=UPDATE")
    page.click("td.time a")
    page.wait_for_url("**/events/*")
    changed = page.locator("table.diff tr.changed")
    assert changed.count() == 2
    assert changed.nth(0).locator("td.old").inner_text() == "Анна"
    assert changed.nth(0).locator("td.new").inner_text() == "Анна К."
    page.click("text=History of this record")
    page.wait_for_url("**/history?*")
    assert "entity=1" in page.url
    users = [text.strip() for text in page.locator("section.card h2 span.user").all_inner_texts()]
    assert users == ["alice", "bob"]


def test_export_csv_download(page, site, tmp_path):
    _url, dsn = site
    page.goto(page.url.split("?")[0] + "?user=alice")
    with page.expect_download() as download_info:
        page.click("a.button:text-is('CSV')")
    download = download_info.value
    assert download.suggested_filename.startswith("auditctl-events-")
    assert download.suggested_filename.endswith(".csv")
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with target.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    with psycopg.connect(dsn) as connection:
        expected = events(connection, where="user_id = 'alice'")
        exports = events(connection, where="action = 'EXPORT'")
    assert [int(row["id"]) for row in rows] == [row["id"] for row in expected]
    assert rows[0]["new"].startswith('{"id": 1, "name": "Анна"')
    assert exports[-1]["details"]["filter"] == {"user_id": "alice"}


def test_switch_to_russian(page, site):
    page.click("a[lang=ru]")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "ru"
    assert page.locator("h1", has_text="События").is_visible()
    assert page.locator("button.primary").inner_text() == "Применить"
    assert "г." in page.locator("td.time a").first.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-main-ru.png"), full_page=True)
    page.click("a[lang=en]")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "en"


def test_stored_script_does_not_run(page, site):
    page.goto(page.url.split("?")[0] + "?user=mallory")
    assert SCRIPT_VALUE in page.inner_text("table.events")
    page.click("td.time a >> nth=-1")
    page.wait_for_url("**/events/*")
    assert page.locator("td.new", has_text=SCRIPT_VALUE).is_visible()
    assert page.evaluate("window.__pwned") is None
    assert page.errors == []


def test_page_works_without_javascript(browser, site):
    url, _dsn = site
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    tab.goto(url + "/")
    tab.fill("#token", TOKEN)
    tab.click("button[type=submit]")
    tab.wait_for_selector("table.events")
    tab.select_option("#f-action", ["INSERT", "DELETE"])
    tab.click("button.primary")
    tab.wait_for_load_state()
    actions = set(tab.locator("table.events .badge").all_inner_texts())
    assert actions <= {"INSERT", "DELETE"}
    assert "Time zone: UTC" in tab.inner_text(".topnav")
    context.close()

