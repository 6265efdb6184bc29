"""The web page over HTTP with Starlette's test client, against a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from zoneinfo import ZoneInfo

import psycopg
import pytest
from starlette.testclient import TestClient

from auditctl.audit.install import install
from auditctl.web import export
from auditctl.web.login import SESSION_COOKIE
from helpers import as_app_user, events
from webhelpers import SCRIPT_VALUE, TOKEN, make_app, move_events_back, seed_audit_log, utc_now

CLIENT_ADDRESS = "203.0.113.200"


@pytest.fixture(scope="module")
def log_db(pg) -> Iterator[str]:
    """A database with a seeded audit log, shared by the tests of this module that only read it."""
    name = pg.create_database()
    dsn = pg.dsn_for(name)
    with psycopg.connect(dsn, autocommit=True) as connection:
        seed_audit_log(connection)
        move_events_back(connection, "bob", days=3)
    yield dsn
    pg.drop_database(name)


@pytest.fixture
def fresh_db(db) -> str:
    """A database with a seeded audit log for tests that count the events the page records."""
    with db.connect() as connection:
        seed_audit_log(connection)
    return db.dsn


def new_client(dsn: str, address: str = CLIENT_ADDRESS, **overrides) -> TestClient:
    return TestClient(make_app(dsn, **overrides), base_url="https://testserver", client=(address, 50000),
                      follow_redirects=False)


def log_in(client: TestClient) -> None:
    response = client.post("/login", data={"token": TOKEN, "next": "/"})
    assert response.status_code == 303, response.text


@pytest.fixture
def client(log_db) -> Iterator[TestClient]:
    with new_client(log_db) as test_client:
        log_in(test_client)
        yield test_client


def shown_event_ids(html: str) -> list[int]:
    """Ids of the events listed in the results table, in page order."""
    return [int(found) for found in re.findall(r'href="/events/(\d+)\?[^"]*" title=', html)]


def error_message(html: str) -> str:
    match = re.search(r'<p class="message">(.*?)</p>', html, re.S)
    return match.group(1).strip() if match else ""


# Login and sessions


def test_page_without_session_redirects_to_login(log_db):
    with new_client(log_db) as client:
        response = client.get("/?user=alice")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F%3Fuser%3Dalice"


def test_login_sets_locked_down_cookie(fresh_db):
    with new_client(fresh_db) as client:
        response = client.post("/login", data={"token": TOKEN, "next": "/?user=bob"})
    assert response.status_code == 303
    assert response.headers["location"] == "/?user=bob"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "Secure" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    with psycopg.connect(fresh_db) as connection:
        [login] = events(connection, where="action = 'LOGIN'")
    assert login["user_id"] == "auditctl-web"
    assert str(login["ip_address"]) == CLIENT_ADDRESS


def test_wrong_token_is_rejected_and_recorded(fresh_db):
    with new_client(fresh_db) as client:
        response = client.post("/login", data={"token": "not-the-token", "next": "/"})
        page = client.get("/")
    assert response.status_code == 401
    assert "Wrong access token." in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert page.status_code == 303
    with psycopg.connect(fresh_db) as connection:
        [failed] = events(connection, where="action = 'LOGIN_FAILED'")
    assert str(failed["ip_address"]) == CLIENT_ADDRESS
    assert failed["details"] == {"reason": "wrong token", "via": "token"}


def test_failed_login_log_names_no_user(fresh_db, caplog):
    caplog.set_level(logging.INFO, logger="auditctl.web")
    with new_client(fresh_db) as client:
        client.post("/login", data={"token": "not-the-token", "next": "/"})
        client.post("/login", data={"token": TOKEN, "next": "/"})
    recorded = [record.getMessage() for record in caplog.records if record.getMessage().startswith("recorded")]
    assert len(recorded) == 2
    assert re.fullmatch(rf"recorded LOGIN_FAILED event \d+ from {re.escape(CLIENT_ADDRESS)}", recorded[0])
    assert re.fullmatch(rf"recorded LOGIN event \d+ for user auditctl-web from {re.escape(CLIENT_ADDRESS)}",
                        recorded[1])


def test_missing_token_is_bad_request(fresh_db):
    with new_client(fresh_db) as client:
        response = client.post("/login", data={"next": "/"})
    assert response.status_code == 400
    assert "Enter the access token." in response.text


def test_failed_logins_are_rate_limited(fresh_db):
    with new_client(fresh_db, max_failed_logins=3) as client:
        statuses = [client.post("/login", data={"token": f"guess-{n}"}).status_code for n in range(3)]
        blocked = client.post("/login", data={"token": TOKEN})
    with new_client(fresh_db, address="198.51.100.99", max_failed_logins=3) as other:
        other_address = other.post("/login", data={"token": TOKEN})
    assert statuses == [401, 401, 401]
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert SESSION_COOKIE not in blocked.headers.get("set-cookie", "")
    assert other_address.status_code == 303


def test_expired_session_asks_to_log_in_again(log_db):
    app = make_app(log_db)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        client.cookies.set(SESSION_COOKIE, app.state.signer.issue("auditctl-web", now=0))
        response = client.get("/")
    assert response.status_code == 401
    assert "Your session has expired." in response.text
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]


def test_forged_session_is_rejected(log_db):
    with new_client(log_db) as client:
        client.cookies.set(SESSION_COOKIE, "v1.9999999999.YWRtaW4.abc.forged-signature")
        response = client.get("/")
    assert response.status_code == 401
    assert "not valid" in response.text


def test_login_ignores_next_to_other_sites(fresh_db):
    with new_client(fresh_db) as client:
        response = client.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
    assert response.headers["location"] == "/"


def test_logout_clears_session_and_records_it(fresh_db):
    with new_client(fresh_db) as client:
        log_in(client)
        response = client.post("/logout")
        after = client.get("/")
    assert response.status_code == 303
    assert after.status_code == 303
    with psycopg.connect(fresh_db) as connection:
        assert len(events(connection, where="action = 'LOGOUT'")) == 1


def test_proxy_mode_trusts_user_header(fresh_db):
    with new_client(fresh_db, auth="proxy") as client:
        missing = client.get("/")
        first = client.get("/", headers={"X-Remote-User": "lead"})
        second = client.get("/?user=bob", headers={"X-Remote-User": "lead"})
    assert missing.status_code == 401
    assert "X-Remote-User" in error_message(missing.text)
    assert first.status_code == 200
    assert second.status_code == 200
    with psycopg.connect(fresh_db) as connection:
        logins = events(connection, where="action = 'LOGIN'")
    assert [login["user_id"] for login in logins] == ["lead"]


# Security headers and escaping


@pytest.mark.parametrize("path", ["/", "/login", "/?from=bad", "/nope", "/static/style.css"],
                         ids=["events", "login", "error", "not-found", "static"])
def test_every_response_has_security_headers(client, path):
    response = client.get(path)
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_pages_are_not_cached(client):
    assert client.get("/").headers["cache-control"] == "no-store"


def test_stored_script_renders_as_text(client):
    listing = client.get("/?user=mallory")
    detail = client.get(f"/events/{min(shown_event_ids(listing.text))}")
    for html in (listing.text, detail.text):
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
        assert SCRIPT_VALUE not in html


def test_filter_values_are_escaped_in_form(client):
    response = client.get('/?user="><script>alert(1)</script>')
    assert response.status_code == 200
    assert "<script>alert(1)" not in response.text
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


# Filters


def test_filter_by_user(client):
    html = client.get("/?user=bob").text
    ids = shown_event_ids(html)
    assert len(ids) == 2
    assert 'value="bob"' in html


def test_filter_by_several_actions(client, log_db):
    ids = shown_event_ids(client.get("/?action=insert&action=DELETE").text)
    with psycopg.connect(log_db) as connection:
        expected = [row["id"] for row in events(connection, where="action IN ('INSERT', 'DELETE')")]
    assert sorted(ids) == sorted(expected)


def test_table_filter_lists_its_ddl(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as connection:
        connection.execute('ALTER TABLE "Order" ADD COLUMN note text')
        [ddl] = events(connection, where="action = 'DDL'", system=True)
    with new_client(fresh_db) as client:
        log_in(client)
        ids = shown_event_ids(client.get("/?table=Order").text)
    assert ddl["id"] in ids


def test_filter_by_table_and_entity_id(client, log_db):
    ids = shown_event_ids(client.get("/?table=Order&entity=10").text)
    with psycopg.connect(log_db) as connection:
        expected = [row["id"] for row in events(connection, where="entity_type = 'public.Order'")]
    assert sorted(ids) == sorted(expected)
    assert len(ids) == 2


def test_free_text_search_ignores_case(client):
    ids = shown_event_ids(client.get("/?q=ANNA.K@").text)
    assert len(ids) == 1


def test_free_text_search_matches_percent_literally(client):
    assert shown_event_ids(client.get("/?q=%25").text) == []


def test_date_range_in_viewer_time_zone(client):
    # bob's events are three days old; a range ending two days ago holds only them.
    moscow = ZoneInfo("Europe/Moscow")
    client.cookies.set("auditctl_tz", "Europe/Moscow")
    start = (utc_now() - timedelta(days=4)).astimezone(moscow).strftime("%Y-%m-%dT%H:%M")
    end = (utc_now() - timedelta(days=2)).astimezone(moscow).strftime("%Y-%m-%dT%H:%M")
    ids = shown_event_ids(client.get(f"/?from={start}&to={end}").text)
    later = shown_event_ids(client.get(f"/?from={end}").text)
    assert len(ids) == 2
    assert set(ids).isdisjoint(later)


def test_quick_period_excludes_older_events(client):
    day = shown_event_ids(client.get("/?period=24h&user=bob").text)
    month = shown_event_ids(client.get("/?period=30d&user=bob").text)
    assert day == []
    assert len(month) == 2


def test_time_shown_in_viewer_time_zone(client, log_db):
    with psycopg.connect(log_db) as connection:
        [event] = events(connection, where="user_id = 'mallory' AND action = 'UPDATE'")
    tokyo = event["occurred_at"].astimezone(ZoneInfo("Asia/Tokyo"))
    client.cookies.set("auditctl_tz", "Asia/Tokyo")
    html = client.get(f"/events/{event['id']}").text
    assert tokyo.strftime("%-I:%M:%S") in html
    assert "Time zone: Asia/Tokyo" in html


# Keyset pages


def test_pages_walk_forward_and_back(log_db):
    with new_client(log_db, page_size=3) as client:
        log_in(client)
        pages = []
        html = client.get("/").text
        while True:
            pages.append(shown_event_ids(html))
            older = re.search(r'rel="next" href="/\?([^"]+)"', html)
            if not older:
                break
            html = client.get("/?" + older.group(1).replace("&amp;", "&")).text
        back = []
        while True:
            newer = re.search(r'rel="prev" href="/\?([^"]*)"', html)
            if not newer:
                break
            html = client.get("/?" + newer.group(1).replace("&amp;", "&")).text
            back.append(shown_event_ids(html))
    everything = [event_id for page in pages for event_id in page]
    with psycopg.connect(log_db) as connection:
        newest_first = [row[0] for row in connection.execute(
            "SELECT id FROM audit.events ORDER BY occurred_at DESC, id DESC").fetchall()]
    assert everything == newest_first
    assert all(len(page) == 3 for page in pages[:-1])
    assert len(pages) > 2
    assert back == list(reversed(pages[:-1]))


def test_page_links_keep_filters(log_db):
    with new_client(log_db, page_size=1) as client:
        log_in(client)
        html = client.get("/?user=alice").text
    older = re.search(r'rel="next" href="/\?([^"]+)"', html).group(1)
    assert "user=alice" in older
    assert "before=" in older
    assert "OFFSET" not in older.upper()


# Error pages


@pytest.mark.parametrize(("path", "status", "text"), [
    ("/?from=2026-13-45", 400, "Invalid from date"),
    ("/?to=yesterday", 400, "Invalid to date"),
    ("/?to=9999-12-31", 400, "Invalid to date"),
    ("/?from=2026-12-05&to=2026-12-01", 400, "later than"),
    ("/?table=Nope", 400, "Nope&#39; not found in the database"),
    ("/?entity=%5B160%2C", 400, "Invalid entity id &#39;[160,&#39;: not valid JSON"),
    ("/?action=NO_SUCH_ACTION", 400, "Unknown action NO_SUCH_ACTION"),
    ("/?action=drop%20table", 400, "Unknown action"),
    ("/?period=2y", 400, "Invalid period"),
    ("/?page=99999999999999999999999", 400, "Invalid page number"),
    ("/?page=-1", 400, "Invalid page number"),
    ("/?before=abc", 400, "Invalid page cursor"),
    ("/?before=99999999999999999999", 400, "Invalid page cursor"),
    ("/?before=1&after=2", 400, "both before and after"),
    ("/?before=987654321", 404, "is not in the audit log"),
    ("/events/987654321", 404, "is not in the audit log"),
    ("/events/abc", 400, "Invalid event id"),
    ("/events/123456789012345678901234567890", 400, "Invalid event id"),
    ("/export?format=xlsx", 400, "Invalid export format"),
    ("/no/such/page", 404, "There is no page"),
    ("/preferences/apply?lang=de", 400, "Unknown language"),
    ("/preferences/apply?tz=Mars/Olympus", 400, "Unknown time zone"),
    ("/?user=a%00b", 400, "The user filter contains a NUL character"),
    ("/?q=%00", 400, "The search filter contains a NUL character"),
    ("/export?format=csv&table=film%00", 400, "The table filter contains a NUL character"),
    ("/history?table=film&entity=1%00", 400, "The entity id filter contains a NUL character"),
], ids=["bad-from", "bad-to", "last-day-to", "swapped-range", "unknown-table", "bad-entity", "unknown-action", "malformed-action", "bad-period", "huge-page",
        "negative-page", "bad-cursor", "huge-cursor", "two-cursors", "missing-cursor", "missing-event",
        "bad-event-id", "huge-event-id", "bad-export-format", "unknown-path", "bad-language", "bad-time-zone",
        "nul-user", "nul-search", "nul-export-table", "nul-history-entity"])
def test_invalid_request_gets_clear_error_page(client, path, status, text):
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert text in error_message(response.text)
    assert "Traceback" not in response.text


def test_database_down_gets_error_page(log_db, caplog):
    with new_client("host=127.0.0.1 port=1 dbname=nothing user=hidden_role connect_timeout=2") as client:
        client.cookies.set(SESSION_COOKIE, client.app.state.signer.issue("auditctl-web"))
        response = client.get("/")
    assert response.status_code == 503
    assert "could not connect to the database of the audit log" in error_message(response.text)
    assert "Traceback" not in response.text
    for detail in ("127.0.0.1", "port=1", "hidden_role", "nothing"):
        assert detail not in response.text
    assert "hidden_role" in caplog.text


def test_wrong_method_gets_error_page(client):
    response = client.post("/")
    assert response.status_code == 405
    assert "does not accept POST" in error_message(response.text)


# Event details


def test_event_shows_old_and_new_side_by_side(client, log_db):
    with psycopg.connect(log_db) as connection:
        [update] = events(connection, where="user_id = 'bob' AND action = 'UPDATE'")
    html = client.get(f"/events/{update['id']}").text
    rows = re.findall(r'<tr class="changed">\s*<th scope="row">(\w+)</th>\s*<td class="old"><pre>(.*?)</pre></td>'
                      r'\s*<td class="new"><pre>(.*?)</pre></td>', html)
    assert ("name", "Анна", "Анна К.") in rows
    assert ("email", "anna@example.com", "anna.k@example.com") in rows


def test_event_links_to_record_history(client, log_db):
    with psycopg.connect(log_db) as connection:
        [insert] = events(connection, where="entity_type = 'public.Order' AND action = 'INSERT'")
    html = client.get(f"/events/{insert['id']}").text
    link = re.search(r'href="/history\?(table=[^"]+)">History of this record', html).group(1).replace("&amp;", "&")
    assert link == "table=public.Order&entity=10"
    history = client.get("/history?" + link)
    assert history.status_code == 200
    assert re.findall(r'<span class="badge action-(\w+)">', history.text) == ["insert", "delete"]
    listed = re.search(r'href="/\?(table=[^"]+)">Show in the event list', history.text).group(1).replace("&amp;", "&")
    assert listed == "table=%22public%22.%22Order%22&entity=10"
    assert len(shown_event_ids(client.get("/?" + listed).text)) == 2


def test_history_page_names_user_and_role(client, log_db):
    with psycopg.connect(log_db) as connection:
        recorded = events(connection, where="entity_type = 'public.Order' AND entity_id = '10'")
    html = client.get("/history?table=public.Order&entity=10").text
    users = re.findall(r'<span class="muted user">(.*?)</span>', html)
    roles = [" ".join(text.split()) for text in re.findall(r'<span class="muted role">(.*?)</span>', html, re.S)]
    assert len(recorded) == 2
    assert users == [event["user_id"] or "—" for event in recorded]
    assert roles == [f"· Database user: {event['db_user']}" for event in recorded]


def test_history_page_resolves_short_table(client):
    html = client.get("/history?table=Order&entity=10").text
    assert re.findall(r'<span class="badge action-(\w+)">', html) == ["insert", "delete"]
    assert "History of public.Order 10" in html
    assert "no longer exists" not in html
    assert "No events recorded" not in html
    listed = re.search(r'href="/\?(table=[^"]+)">Show in the event list', html).group(1).replace("&amp;", "&")
    assert listed == "table=%22public%22.%22Order%22&entity=10"


def test_history_page_names_unknown_table(client):
    response = client.get("/history?table=nosuch&entity=2")
    assert response.status_code == 400
    assert "Table &#39;nosuch&#39; not found in the database or in the audit log." in error_message(response.text)
    assert "no longer exists" not in response.text


def test_history_page_without_record_is_rejected(client):
    response = client.get("/history?table=public.Order")
    assert response.status_code == 400
    assert "needs table and entity" in error_message(response.text)


# Dashboard


def test_dashboard_has_thirty_days_and_top_lists(client):
    html = client.get("/").text
    assert len(re.findall(r'<rect class="bar"', html)) == 30
    assert re.search(r'<svg class="chart"', html)
    top_users = re.search(r"<h2>Top users.*?</h2>(.*?)</ol>", html, re.S).group(1)
    assert "alice" in top_users
    top_tables = re.search(r"<h2>Top tables.*?</h2>(.*?)</ol>", html, re.S).group(1)
    assert "public.customer" in top_tables


# Export


def test_csv_export_streams_filter_and_records_it(fresh_db):
    with new_client(fresh_db) as client:
        log_in(client)
        response = client.get("/export?format=csv&user=mallory")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="auditctl-events-\d{8}-\d{6}\.csv"',
                        response.headers["content-disposition"])
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["user_id"] for row in rows] == ["mallory", "mallory"]
    with psycopg.connect(fresh_db) as connection:
        [export] = events(connection, where="action = 'EXPORT'")
    assert export["user_id"] == "auditctl-web"
    assert export["details"] == {"format": "csv", "filter": {"user_id": "mallory"}, "via": "web"}
    assert str(export["ip_address"]) == CLIENT_ADDRESS


def test_csv_export_neutralizes_formulas(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as connection:
        connection.execute("SELECT audit.log_event('SIGNUP', '=cmd|'' /C calc''!A0', NULL, NULL, NULL, NULL)")
        connection.execute("SELECT audit.log_event('SIGNUP', '@SUM(1+1)', NULL, NULL, NULL, NULL)")
    with new_client(fresh_db) as client:
        log_in(client)
        text = client.get("/export?format=csv&action=SIGNUP").text
    users = [row["user_id"] for row in csv.DictReader(io.StringIO(text))]
    assert users == ["'=cmd|' /C calc'!A0", "'@SUM(1+1)"]


def test_jsonl_export_matches_log(fresh_db):
    with new_client(fresh_db) as client:
        log_in(client)
        response = client.get("/export?format=jsonl&table=customer")
    lines = [json.loads(line) for line in response.text.splitlines()]
    with psycopg.connect(fresh_db) as connection:
        expected = events(connection, where="entity_type = 'public.customer'")
    assert [line["id"] for line in lines] == [row["id"] for row in expected]
    assert lines[0]["new"]["name"] == "Анна"
    assert response.headers["content-disposition"].endswith('.jsonl"')


def test_export_with_invalid_filter_records_nothing(fresh_db):
    with new_client(fresh_db) as client:
        log_in(client)
        response = client.get("/export?format=csv&from=never")
    assert response.status_code == 400
    with psycopg.connect(fresh_db) as connection:
        assert events(connection, where="action = 'EXPORT'") == []


def test_export_cut_by_database_records_nothing(fresh_db, caplog, monkeypatch):
    stream_csv = export.stream_csv

    def stream_then_terminate(connection, *args, **kwargs):
        chunks = stream_csv(connection, *args, **kwargs)
        yield next(chunks)
        with psycopg.connect(fresh_db, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
        yield from chunks

    monkeypatch.setattr(export, "stream_csv", stream_then_terminate)
    with new_client(fresh_db) as client:
        log_in(client)
        response = client.get("/export?format=csv&table=customer")
    header = "id,occurred_at,user_id,ip_address,db_user,action,entity_type,entity_id,old,new,details," \
             "application_name,transaction_id\n"
    assert response.status_code == 200
    assert response.text == header
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert errors[0].name == "auditctl.web.export"
    assert errors[0].exc_info is None
    assert errors[0].getMessage().startswith(f"export by auditctl-web failed after {len(header)} bytes, so the "
                                             "viewer got an incomplete file and no EXPORT event was recorded: ")
    with psycopg.connect(fresh_db) as connection:
        assert events(connection, where="action = 'EXPORT'") == []


def add_stage_table(dsn: str) -> None:
    """Add an audited table with a two-column primary key, and one row in it."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute('CREATE TABLE stage ("productId" text, "stageNo" integer, note text, '
                           'PRIMARY KEY ("productId", "stageNo"))')
        install(connection, "audit", ["stage"])
        as_app_user(connection, "alice", None, "INSERT INTO stage VALUES ('pr00000010', 1, 'cut')")


@pytest.mark.parametrize("query", [
    "table=NoSuchTable",
    "entity=%5B160%2C",
    "action=NO_SUCH_ACTION",
    "from=never",
    "from=2026-12-05&to=2026-12-01",
    "period=2y",
    "table=customer&entity=abc",
    "table=customer&entity=%5B1%2C2%5D",
    "table=stage&entity=pr00000010",
], ids=["unknown-table", "bad-entity-json", "unknown-action", "bad-from", "swapped-range", "bad-period",
        "entity-wrong-type", "entity-too-many-values", "entity-too-few-values"])
def test_export_rejects_filter_as_page_does(fresh_db, caplog, query):
    add_stage_table(fresh_db)
    with new_client(fresh_db) as client:
        log_in(client)
        page = client.get(f"/?{query}")
        export = client.get(f"/export?format=csv&{query}")
    assert page.status_code == 400
    assert export.status_code == 400
    assert export.headers["content-type"].startswith("text/html")
    assert "content-disposition" not in export.headers
    assert error_message(export.text) == error_message(page.text)
    assert error_message(export.text)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    with psycopg.connect(fresh_db) as connection:
        assert events(connection, where="action = 'EXPORT'") == []


def test_partial_composite_key_rejected_like_cli(fresh_db, cli):
    add_stage_table(fresh_db)
    result = cli("query", "--table", "stage", "--entity-id", "pr00000010", dsn=fresh_db)
    with new_client(fresh_db) as client:
        log_in(client)
        page = client.get("/?table=stage&entity=pr00000010")
        whole_key = client.get("/?table=stage&entity=%5B%22pr00000010%22%2C%201%5D")
        client.cookies.set("auditctl_lang", "ru")
        russian = client.get("/?table=stage&entity=pr00000010")
    assert result.exit_code == 2
    assert page.status_code == 400
    expected = result.stderr.strip().removeprefix("Error: ").replace("--entity-id", "entity id")
    assert unescape(error_message(page.text)) == expected
    assert russian.status_code == 400
    assert unescape(error_message(russian.text)) == (
        "Неверное значение «pr00000010» (идентификатор записи): первичный ключ таблицы public.stage состоит "
        "из 2 столбцов (productId, stageNo); укажите их значения одним массивом JSON, например «[\"a\", 5]».")
    assert whole_key.status_code == 200
    assert len(shown_event_ids(whole_key.text)) == 1


# Language


def test_accept_language_picks_russian(log_db):
    with new_client(log_db) as client:
        response = client.get("/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.8"})
    assert '<html lang="ru">' in response.text
    assert "Войти" in response.text


def test_language_switch_sets_cookie_and_returns(client):
    response = client.get("/preferences/apply?lang=ru&next=/%3Fuser%3Dbob")
    assert response.status_code == 303
    assert response.headers["location"] == "/?user=bob"
    html = client.get("/?user=bob", headers={"Accept-Language": "en"}).text
    assert '<html lang="ru">' in html
    assert "События" in html


def test_russian_page_formats_dates_and_errors(client):
    client.cookies.set("auditctl_lang", "ru")
    html = client.get("/?user=bob").text
    error = client.get("/?from=2026-13-45")
    assert re.search(r"\d{1,2} [а-я]{3}\.? \d{4}", html), "dates are not in Russian format"
    assert error.status_code == 400
    assert "Неверная дата" in error_message(error.text)


def test_top_lists_default_to_chart_days(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as connection:
        move_events_back(connection, "bob", days=40)
    start = (utc_now() - timedelta(days=60)).strftime("%Y-%m-%d")
    with new_client(fresh_db) as client:
        log_in(client)
        recent = client.get("/").text
        everything = client.get(f"/?from={start}").text
    recent_users = re.search(r"<h2>Top users.*?</h2>(.*?)</ol>", recent, re.S).group(1)
    all_users = re.search(r"<h2>Top users.*?</h2>(.*?)</ol>", everything, re.S).group(1)
    assert "bob" not in recent_users
    assert "· 30 days" in recent
    assert "bob" in all_users


def test_action_list_offers_application_actions(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as connection:
        connection.execute("SELECT audit.log_event('INVOICE_SENT', 'carol')")
    with new_client(fresh_db) as client:
        log_in(client)
        html = client.get("/").text
        filtered = client.get("/?action=invoice_sent")
    assert 'value="INVOICE_SENT"' in html
    assert filtered.status_code == 200
    assert len(shown_event_ids(filtered.text)) == 1


def test_login_form_skips_when_logged_in(client):
    response = client.get("/login?next=/%3Fuser%3Dbob")
    assert response.status_code == 303
    assert response.headers["location"] == "/?user=bob"


def test_export_has_no_row_limit(fresh_db):
    with psycopg.connect(fresh_db, autocommit=True) as connection:
        connection.execute("INSERT INTO customer SELECT i, 'bulk ' || i FROM generate_series(100, 5099) i")
    with new_client(fresh_db, page_size=10) as client:
        log_in(client)
        with client.stream("GET", "/export?format=csv&table=customer&q=bulk") as response:
            chunks = list(response.iter_bytes())
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode("utf-8"))))
    assert len(rows) == 5000
    assert sorted(int(row["entity_id"]) for row in rows) == list(range(100, 5100))
