"""Parts of the web page that need no database: tokens, sessions, the limiter, filters and formatting."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from starlette.datastructures import QueryParams

from auditctl.audit.browse import DayCount
from auditctl.errors import InvalidArgumentError
from auditctl.web.auth import LoginLimiter, SessionSigner, SessionState, load_token, tokens_match
from auditctl.web.filters import FilterError, FilterForm, parse_filters, parse_page
from auditctl.web.formatting import bar_chart, format_number, format_time
from auditctl.web.login import safe_next
from auditctl.web.middleware import negotiate_language, viewer_time_zone

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
MOSCOW = ZoneInfo("Europe/Moscow")


def test_tokens_match_only_exact_token():
    assert tokens_match("s3cret-token-0123456789", "s3cret-token-0123456789")
    assert not tokens_match("s3cret-token-012345678", "s3cret-token-0123456789")
    assert not tokens_match("", "s3cret-token-0123456789")


def test_session_round_trip_keeps_user():
    signer = SessionSigner(lifetime_seconds=60)
    session = signer.check(signer.issue("Анна", now=1000), now=1030)
    assert session.state is SessionState.VALID
    assert session.user_id == "Анна"


def test_session_expires_after_lifetime():
    signer = SessionSigner(lifetime_seconds=60)
    assert signer.check(signer.issue("lead", now=1000), now=1061).state is SessionState.EXPIRED


@pytest.mark.parametrize("tamper", [
    lambda value: value.replace("v1.", "v2.", 1),
    lambda value: value[:-2] + ("AA" if not value.endswith("AA") else "BB"),
    lambda value: "garbage",
    lambda value: "",
], ids=["version", "signature", "garbage", "empty"])
def test_session_rejects_tampered_cookie(tamper):
    signer = SessionSigner(lifetime_seconds=60)
    assert signer.check(tamper(signer.issue("lead", now=1000)), now=1001).state is SessionState.INVALID


def test_session_from_other_process_is_invalid():
    value = SessionSigner(lifetime_seconds=60).issue("lead", now=1000)
    assert SessionSigner(lifetime_seconds=60).check(value, now=1001).state is SessionState.INVALID


def test_limiter_blocks_until_window_passes():
    limiter = LoginLimiter(max_failures=3, window_seconds=100)
    for moment in (0, 10, 20):
        assert limiter.retry_after("198.51.100.1", now=moment) is None
        limiter.record_failure("198.51.100.1", now=moment)
    assert limiter.retry_after("198.51.100.1", now=30) == 71
    assert limiter.retry_after("198.51.100.2", now=30) is None
    assert limiter.retry_after("198.51.100.1", now=101) is None


def test_limiter_forgets_oldest_addresses():
    limiter = LoginLimiter(max_failures=1, window_seconds=100, max_addresses=2)
    for address in ("a", "b", "c"):
        limiter.record_failure(address, now=0)
    assert limiter.retry_after("a", now=1) is None
    assert limiter.retry_after("c", now=1) is not None


def test_token_file_must_be_private(tmp_path):
    path = tmp_path / "token"
    path.write_text("0123456789abcdef0123\n")
    path.chmod(0o644)
    with pytest.raises(InvalidArgumentError, match="chmod 600"):
        load_token(path, environ={})
    path.chmod(0o600)
    assert load_token(path, environ={}) == "0123456789abcdef0123"


def test_token_from_environment_must_be_long_enough():
    with pytest.raises(InvalidArgumentError, match="shorter than 16"):
        load_token(None, environ={"AUDITCTL_WEB_TOKEN": "short"})
    assert load_token(None, environ={"AUDITCTL_WEB_TOKEN": "x" * 16}) == "x" * 16


def test_missing_token_says_how_to_set_one():
    with pytest.raises(InvalidArgumentError, match="AUDITCTL_WEB_TOKEN"):
        load_token(None, environ={})


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_token_file_of_other_user_is_rejected(tmp_path):
    path = tmp_path / "token"
    path.write_text("0123456789abcdef0123")
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(InvalidArgumentError, match="another user"):
        load_token(path, environ={})


@pytest.mark.parametrize(("cookie", "header", "expected"), [
    (None, "ru-RU,ru;q=0.9,en;q=0.8", "ru"),
    (None, "en-US,en;q=0.9,ru;q=0.8", "en"),
    (None, "de-DE,ru;q=0.5", "ru"),
    (None, "ru;q=0.2,en;q=0.7", "en"),
    (None, "ru;q=0", "en"),
    (None, "", "en"),
    (None, "ru;q=abc", "en"),
    ("ru", "en", "ru"),
    ("xx", "ru", "ru"),
], ids=["russian", "english", "skips-unknown", "quality", "zero-quality", "empty", "bad-quality", "cookie",
        "bad-cookie"])
def test_language_negotiation(cookie, header, expected):
    assert negotiate_language(cookie, header) == expected


@pytest.mark.parametrize(("cookie", "expected"), [
    ("Europe/Moscow", "Europe/Moscow"), (None, "UTC"), ("Mars/Base", "UTC"), ("../../etc/passwd", "UTC"),
], ids=["valid", "missing", "unknown", "path"])
def test_viewer_time_zone(cookie, expected):
    assert viewer_time_zone(cookie).key == expected


@pytest.mark.parametrize(("target", "expected"), [
    ("/?user=bob", "/?user=bob"), ("//evil.example/", "/"), ("https://evil.example/", "/"),
    ("/\\evil.example", "/"), ("/\nLocation: x", "/"), (None, "/"), ("", "/"),
], ids=["path", "protocol-relative", "absolute", "backslash", "newline", "none", "empty"])
def test_safe_next_stays_on_site(target, expected):
    assert safe_next(target) == expected


def test_filters_read_dates_in_viewer_time_zone():
    filters, form = parse_filters(QueryParams("from=2026-12-01T09:30&to=2026-12-03&user=alice"), MOSCOW, NOW)
    assert filters.since == datetime(2026, 12, 1, 6, 30, tzinfo=timezone.utc)
    assert filters.until == datetime(2026, 12, 3, 21, 0, tzinfo=timezone.utc)
    assert filters.user_id == "alice"
    assert form.query() == "user=alice&from=2026-12-01T09%3A30&to=2026-12-03"


def test_filters_keep_explicit_offset():
    filters, _form = parse_filters(QueryParams("from=2026-12-01T09:30:00%2B05:00"), MOSCOW, NOW)
    assert filters.since == datetime(2026, 12, 1, 4, 30, tzinfo=timezone.utc)


def test_period_counts_back_from_now():
    filters, _form = parse_filters(QueryParams("period=7d&from=2000-01-01"), MOSCOW, NOW)
    assert filters.since == datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_actions_are_upper_cased_and_deduplicated():
    filters, form = parse_filters(QueryParams("action=insert&action=INSERT&action=login_failed"), MOSCOW, NOW)
    assert filters.actions == ["INSERT", "LOGIN_FAILED"]
    assert form.actions == ["INSERT", "LOGIN_FAILED"]


@pytest.mark.parametrize("entity", ["[160,2]", "[160, 2]", " [ 160 ,2 ] "], ids=["tight", "spaced", "loose"])
def test_entity_filter_ignores_spacing(entity):
    filters, form = parse_filters(QueryParams({"entity": entity}), MOSCOW, NOW)
    assert filters.entity_id == "[160, 2]"
    assert form.entity == entity.strip()


def test_entity_filter_keeps_single_value():
    filters, _form = parse_filters(QueryParams("entity=pr00000010"), MOSCOW, NOW)
    assert filters.entity_id == "pr00000010"


def test_invalid_entity_array_raises():
    with pytest.raises(FilterError, match=r"^Invalid entity id '\[160,': not valid JSON"):
        parse_filters(QueryParams({"entity": "[160,"}), MOSCOW, NOW)


@pytest.mark.parametrize("query", ["user=" + "x" * 501, "action=a;b", "from=12/01/2026", "period=1y",
                                   "from=2026-12-05&to=2026-12-01", "&".join(["action=A"] * 33)],
                         ids=["long-value", "action-format", "us-date", "period", "swapped", "many-actions"])
def test_invalid_filters_raise(query):
    with pytest.raises(FilterError):
        parse_filters(QueryParams(query), MOSCOW, NOW)


@pytest.mark.parametrize("query", ["page=0", "page=1000001", "page=²", "page=1%0A", "before=-1",
                                   "before=9223372036854775808", "after=1e3"],
                         ids=["zero", "too-big", "unicode-digit", "newline", "negative", "past-bigint", "float"])
def test_invalid_page_raises(query):
    with pytest.raises(FilterError):
        parse_page(QueryParams(query))


def test_form_replaced_builds_quick_pick_links():
    form = FilterForm(user="bob", date_from="2026-12-01", period="")
    assert form.replaced(period="7d", date_from="").query() == "user=bob&period=7d"
    assert form.query(before=5, page=2) == "user=bob&from=2026-12-01&before=5&page=2"


def test_time_and_numbers_follow_language():
    moment = datetime(2026, 12, 4, 9, 5, 7, tzinfo=timezone.utc)
    assert format_time(moment, MOSCOW, "en") == "Dec 4, 2026, 12:05:07\u202fPM"
    assert format_time(moment, MOSCOW, "ru") == "4 дек. 2026\u202fг., 12:05:07"
    assert format_number(1234567, "en") == "1,234,567"
    assert format_number(1234567, "ru") == "1\xa0234\xa0567"


def test_bar_chart_scales_to_busiest_day():
    days = [DayCount(date(2026, 12, 1), 0), DayCount(date(2026, 12, 2), 5), DayCount(date(2026, 12, 3), 10)]
    chart = bar_chart(days, "en", width=300, height=100)
    assert [bar.height for bar in chart.bars] == [0.0, 50.0, 100.0]
    assert [bar.y for bar in chart.bars] == [100.0, 50.0, 0.0]
    assert chart.maximum == 10
    assert chart.total == 15
    assert (chart.first_day, chart.last_day) == ("Dec 1", "Dec 3")


def test_bar_chart_of_empty_log_has_flat_bars():
    chart = bar_chart([DayCount(date(2026, 12, 1), 0)], "en")
    assert chart.bars[0].height == 0
    assert chart.maximum == 0


@pytest.mark.parametrize(("host", "expected"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("192.0.2.1", False), ("audit.example.com", False),
], ids=["ipv4", "ipv4-range", "ipv6", "name", "any", "address", "host-name"])
def test_loopback_detection_for_warning(host, expected):
    from auditctl.cli.serve_command import _is_loopback
    assert _is_loopback(host) is expected


@pytest.mark.parametrize(("language", "expected"), [
    ("en", ["The page connects as role app, which can change the audit log; create a read-only role with "
            "`auditctl install --viewer-role ROLE` and connect as that role.",
            "The page listens on 0.0.0.0, which other machines can reach; serve it through a reverse proxy "
            "with TLS, since session cookies are sent over HTTPS only."]),
    ("ru", ["Страница подключается как роль app, которая может изменять журнал аудита; создайте роль только для "
            "чтения командой `auditctl install --viewer-role РОЛЬ` и подключайтесь от её имени.",
            "Страница принимает подключения на 0.0.0.0, и этот адрес доступен с других машин; открывайте её через "
            "обратный прокси с TLS, потому что cookie сеанса передаются только по HTTPS."]),
], ids=["en", "ru"])
def test_serve_warnings_per_language(language, expected):
    from auditctl.cli.serve_command import startup_warnings
    from auditctl.i18n import use_language
    with use_language(language):
        assert startup_warnings("app", True, "0.0.0.0") == expected
        assert startup_warnings("viewer", False, "127.0.0.1") == []
