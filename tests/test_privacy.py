"""Column rules: excluded, masked and hashed values, and default masking of secrets."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from auditctl.audit.install import install
from auditctl.audit.rules import Rule, hmac_hex, looks_secret
from auditctl.audit.status import TableState, collect_status
from auditctl.errors import AuditctlError
from helpers import events


@pytest.fixture
def accounts(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE account (
                id int PRIMARY KEY, email text, "passwordHash" text, "apiToken" text,
                notes text, phone text, seen_at timestamptz)
        """)
    return db


@pytest.mark.parametrize(("name", "secret"), [
    ("passwordHash", True), ("password", True), ("user_pwd", True), ("apiKey", True), ("api_key", True),
    ("refreshToken", True), ("client_secret", True), ("private_key", True), ("credentials", True),
    ("email", False), ("passport_no", False), ("keyboard", False), ("compass", False),
])
def test_secret_name_detection(name, secret):
    assert looks_secret(name) is secret


def test_secrets_masked_by_default(accounts):
    with accounts.connect() as connection:
        result = install(connection, "audit", ["account"])
        connection.execute("INSERT INTO account (id, email, \"passwordHash\") VALUES (1, 'a@x', '$2b$12$abc')")
        connection.execute("UPDATE account SET \"passwordHash\" = '$2b$12$def' WHERE id = 1")
        connection.execute("UPDATE account SET \"apiToken\" = NULL WHERE id = 1")
        insert, update = events(connection)
    assert {(r.column, r.rule, r.by_default) for r in result.column_rules} == {
        ("passwordHash", Rule.MASK, True), ("apiToken", Rule.MASK, True)}
    assert insert["new_values"]["passwordHash"] == "[masked]"
    assert insert["new_values"]["apiToken"] is None
    assert insert["new_values"]["email"] == "a@x"
    assert update["old_values"] == {"passwordHash": "[masked]"}
    assert update["new_values"] == {"passwordHash": "[masked]"}


def test_excluded_column_never_stored(accounts):
    with accounts.connect() as connection:
        install(connection, "audit", ["account"], column_rules=[("account.seen_at", Rule.EXCLUDE)])
        connection.execute("INSERT INTO account (id, email, seen_at) VALUES (1, 'a@x', now())")
        connection.execute("UPDATE account SET seen_at = now() + interval '1 hour'")
        connection.execute("UPDATE account SET seen_at = now() + interval '2 hours', email = 'b@x'")
        connection.execute("DELETE FROM account")
        recorded = events(connection)
    assert [e["action"] for e in recorded] == ["INSERT", "UPDATE", "DELETE"]
    assert all("seen_at" not in (e["new_values"] or {}) | (e["old_values"] or {}) for e in recorded)
    assert recorded[1]["new_values"] == {"email": "b@x"}


def test_hashed_column_matches_hmac(accounts):
    with accounts.connect() as connection:
        install(connection, "audit", ["account"], column_rules=[("public.account.phone", Rule.HASH)])
        connection.execute("INSERT INTO account (id, phone) VALUES (1, '+7 900 000-00-00'), (2, '+7 900 000-00-00')")
        first, second = events(connection)
        inner, outer = connection.execute("SELECT inner_pad, outer_pad FROM audit.hash_key").fetchone()
    assert first["new_values"]["phone"] == second["new_values"]["phone"]
    assert first["new_values"]["phone"] == hmac_hex(inner, outer, "+7 900 000-00-00")
    assert first["new_values"]["phone"].startswith("hmac-sha256:")


def test_hmac_construction_is_standard():
    key = b"k" * 32
    padded = key.ljust(64, b"\x00")
    inner = bytes(byte ^ 0x36 for byte in padded)
    outer = bytes(byte ^ 0x5C for byte in padded)
    assert hmac_hex(inner, outer, "value") == "hmac-sha256:" + hmac.new(key, b"value", hashlib.sha256).hexdigest()


def test_keep_column_overrides_default_mask(accounts):
    with accounts.connect() as connection:
        install(connection, "audit", ["account"], column_rules=[("account.apiToken", Rule.KEEP)])
        connection.execute("INSERT INTO account (id, \"apiToken\") VALUES (1, 'tok-1')")
        [event] = events(connection)
    assert event["new_values"]["apiToken"] == "tok-1"
    assert event["new_values"]["passwordHash"] is None


def test_rules_persist_across_installs(accounts):
    with accounts.connect() as connection:
        install(connection, "audit", ["account"], column_rules=[("account.notes", Rule.MASK)])
        again = install(connection, "audit", ["account"])
        connection.execute("INSERT INTO account (id, notes) VALUES (1, 'private')")
        [event] = events(connection)
        report = collect_status(connection, "audit")
    assert again.installed == []
    assert event["new_values"]["notes"] == "[masked]"
    assert report.tables[0].state is TableState.AUDITED


def test_new_secret_column_makes_trigger_outdated(accounts):
    with accounts.connect() as connection:
        install(connection, "audit", ["account"])
        connection.execute("ALTER TABLE account ADD COLUMN \"resetToken\" text")
        report = collect_status(connection, "audit")
        install(connection, "audit", ["account"])
        connection.execute("INSERT INTO account (id, \"resetToken\") VALUES (1, 'r-1')")
        [event] = events(connection)
    assert report.tables[0].state is TableState.OUTDATED
    assert event["new_values"]["resetToken"] == "[masked]"


@pytest.mark.parametrize("reference", ["account", "account.nosuch", "nosuch.col", "a.b.c.d"],
                         ids=["no-column", "unknown-column", "unknown-table", "too-many-parts"])
def test_bad_column_reference_rejected(accounts, reference):
    with accounts.connect() as connection:
        with pytest.raises(AuditctlError):
            install(connection, "audit", ["account"], column_rules=[(reference, Rule.MASK)])
        assert connection.execute("SELECT to_regnamespace('audit')").fetchone()[0] is None


def test_install_cli_reports_masked_columns(accounts, cli):
    result = cli("install", "account", "--hash-column", "account.phone", "--exclude-column", "account.seen_at",
                 dsn=accounts.dsn)
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Column public.account.passwordHash looks like a secret and is masked" in text
    assert "Column public.account.phone is hashed" in text
    assert "Column public.account.seen_at is excluded" in text


def test_large_values_stored_as_size_and_hash(db):
    big = "Ж" * 5000  # 10,000 bytes of UTF-8
    with db.connect() as connection:
        connection.execute("CREATE TABLE file (id int PRIMARY KEY, name text, body text, blob bytea, kept bytea)")
        install(connection, "audit", ["file"], column_rules=[("file.kept", Rule.KEEP)])
        connection.execute("INSERT INTO file VALUES (1, 'a.txt', %s, '\\x0102ff', '\\x0a')", (big,))
        with connection.transaction():
            connection.execute("INSERT INTO file VALUES (2, 'b.txt', 'short', NULL, NULL)")
            connection.execute("UPDATE file SET body = body || '!' WHERE id = 1")
        insert, _second, update = events(connection)
    assert insert["new_values"]["name"] == "a.txt"
    assert insert["new_values"]["body"] == {"bytes": 10000, "sha256": hashlib.sha256(big.encode()).hexdigest()}
    assert insert["new_values"]["blob"] == {"bytes": 3, "sha256": hashlib.sha256(b"\x01\x02\xff").hexdigest()}
    assert insert["new_values"]["kept"] == "\\x0a"
    assert update["old_values"]["body"]["bytes"] == 10000
    assert update["new_values"]["body"]["bytes"] == 10001


def test_max_value_bytes_zero_keeps_text(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")
    result = cli("install", "note", "--max-value-bytes", "0", dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    with db.connect() as connection:
        connection.execute("INSERT INTO note VALUES (1, repeat('x', 20000))")
        [event] = events(connection)
    assert len(event["new_values"]["body"]) == 20000
