"""The [audit] table of the config file: tables to audit, column rules, the new-table policy, and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditctl.audit.catalog import like_matches
from auditctl.audit.config import load_audit_settings
from auditctl.audit.ddl import AutoAuditPolicy
from auditctl.audit.rules import hmac_hex
from auditctl.audit.status import collect_status
from conftest import REPO_ROOT
from helpers import events

EXAMPLE = REPO_ROOT / "auditctl.example.toml"

ORDERS_DDL = '''
    CREATE TABLE account (id int PRIMARY KEY, email text, phone text, "apiToken" text, notes text, seen_at int);
    CREATE TABLE "Заказ" (id int PRIMARY KEY, "Сумма ""итог""" int, "Клиент" text);
'''

RULES_TOML = """
[audit.tables."public.account"]
hash = ["phone"]
exclude = ["seen_at"]
keep = ["apiToken"]
mask = ["notes"]

[audit.tables.'Заказ']
mask = ['Сумма "итог"']
"""


def _write(folder: Path, text: str) -> Path:
    config = folder / "auditctl.toml"
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture
def orders(db):
    with db.connect() as connection:
        connection.execute(ORDERS_DDL)
    return db


def test_example_config_is_valid():
    settings = load_audit_settings(EXAMPLE, {})
    assert settings.exclude == ("\\_prisma\\_%",)
    assert settings.max_value_bytes == 8192
    # Choosing tables, auto-audit, roles and column rules depend on the database, so they stay off.
    assert settings.schemas == ()
    assert settings.auto_audit is None
    assert settings.app_role is None
    assert settings.column_rules == ()


def test_typed_flags_override_file(tmp_path):
    config = _write(tmp_path, '[audit]\nmax_value_bytes = 100\napp_role = "app"\nauto_audit = false\n')

    from_file = load_audit_settings(config, {})
    typed = load_audit_settings(config, {"max_value_bytes": 0, "auto_audit": True})

    assert from_file.max_value_bytes == 100
    assert from_file.auto_audit_policy() is None
    assert typed.max_value_bytes == 0
    assert typed.app_role == "app"
    assert typed.auto_audit_policy() == AutoAuditPolicy(("public",), ())


def test_file_without_audit_table_gives_defaults(tmp_path):
    config = _write(tmp_path, '[backup]\ndir = "dumps"\n')
    settings = load_audit_settings(config, {})
    assert settings.config_path is None
    assert settings.column_rules == ()
    assert settings.auto_audit_policy() is True


def test_policy_takes_file_lists_unless_typed(tmp_path):
    config = _write(tmp_path, '[audit]\nauto_audit = true\nschemas = ["app", "billing"]\nexclude = ["tmp\\\\_%"]\n')
    settings = load_audit_settings(config, {})
    assert settings.auto_audit_policy() == AutoAuditPolicy(("app", "billing"), ("tmp\\_%",))
    assert settings.auto_audit_policy(("other",), ()) == AutoAuditPolicy(("other",), ("tmp\\_%",))
    assert load_audit_settings(None, {}).auto_audit_policy() is True


@pytest.mark.parametrize(("name", "pattern", "matches"), [
    ("_prisma_migrations", "\\_prisma\\_%", True),
    ("xprisma_migrations", "\\_prisma\\_%", False),
    ("tmp_1", "tmp_%", True),
    ("tmpx", "tmp\\_%", False),
    ("Заказ", "За%", True),
    ("a.b", "a_b", True),
    ("a+b", "a+b", True),
    ("User", "user", False),
], ids=["escaped-underscore", "escaped-mismatch", "wildcard-underscore", "literal-underscore", "cyrillic",
        "dot-is-literal", "regex-chars", "case-sensitive"])
def test_like_patterns_match_as_in_postgres(db, name, pattern, matches):
    with db.connect() as connection:
        server = connection.execute("SELECT %s LIKE %s", (name, pattern)).fetchone()[0]
    assert server is matches
    assert like_matches(name, pattern) is matches


def test_config_rules_take_effect(orders, cli, tmp_path):
    config = _write(tmp_path, RULES_TOML)

    result = cli("install", "account", "Заказ", "--config", str(config), dsn=orders.dsn)

    assert result.exit_code == 0, result.stderr
    with orders.connect() as connection:
        connection.execute("""INSERT INTO account VALUES (1, 'a@x', '+7 900', 'tok-1', 'private', 5)""")
        connection.execute("""INSERT INTO "Заказ" VALUES (1, 100, 'Иван')""")
        account, order = events(connection)
        inner, outer = connection.execute("SELECT inner_pad, outer_pad FROM audit.hash_key").fetchone()
    assert account["new_values"]["phone"] == hmac_hex(inner, outer, "+7 900")
    assert "seen_at" not in account["new_values"]
    assert account["new_values"]["apiToken"] == "tok-1"
    assert account["new_values"]["notes"] == "[masked]"
    assert account["new_values"]["email"] == "a@x"
    assert order["new_values"]['Сумма "итог"'] == "[masked]"
    assert order["new_values"]["Клиент"] == "Иван"
    text = " ".join(result.stdout.split())
    assert f"Settings of [audit] read from {config}." in text
    assert f"Column public.account.phone is hashed: values are stored as HMAC-SHA256. Rule from {config}." in text
    assert 'Column public.Заказ.Сумма "итог" is masked' in text


def test_flag_overrides_file_rule(orders, cli, tmp_path):
    config = _write(tmp_path, RULES_TOML)

    result = cli("install", "account", "--config", str(config), "--mask-column", "account.phone", dsn=orders.dsn)

    assert result.exit_code == 0, result.stderr
    with orders.connect() as connection:
        connection.execute("INSERT INTO account (id, phone, notes) VALUES (1, '+7 900', 'n')")
        [event] = events(connection)
    assert event["new_values"]["phone"] == "[masked]"
    assert event["new_values"]["notes"] == "[masked]"
    text = " ".join(result.stdout.split())
    assert "Column public.account.phone is masked: changes are recorded, values are not. Rule from --mask-column." in text


def test_later_install_reports_stored_rules(orders, cli, tmp_path):
    config = _write(tmp_path, RULES_TOML)
    assert cli("install", "account", "--config", str(config), dsn=orders.dsn).exit_code == 0

    again = cli("install", "account", "--lock-timeout", "5", dsn=orders.dsn)

    assert again.exit_code == 0, again.stderr
    text = " ".join(again.stdout.split())
    assert "Column public.account.notes is masked: changes are recorded, values are not. " \
           "Rule stored by an earlier install." in text
    assert "Settings of [audit]" not in text


@pytest.mark.parametrize(("text", "message"), [
    ('[audit]\nschemas = "public"\nmax_value_bytes = "big"\n',
     'Invalid value for max_value_bytes in [audit] of PATH: expected a whole number of 0 or more, got "big".'),
    ('[audit]\nauto_audit = "yes"\n',
     'Invalid value for auto_audit in [audit] of PATH: expected true or false, got "yes".'),
    ('[audit]\nschema = ["public"]\n', "Unknown key schema in [audit] of PATH;"),
    ('[audti]\nschemas = ["public"]\n', "Unknown table [audti] in PATH;"),
    ('[audit.tables."public.account"]\nhide = ["email"]\n',
     'Unknown key hide in [audit.tables."public.account"] of PATH;'),
    ('[audit.tables."public.account"]\nmask = "email"\nhash = ["email"]\n',
     "Column 'email' has two rules in [audit.tables.\"public.account\"]"),
    ('[audit.tables."public.account"]\nmask = [1]\n',
     'Invalid value for mask in [audit.tables."public.account"] of PATH: expected a list of strings, got [1].'),
    ('[audit.tables]\n"public.account" = ["email"]\n', '[audit.tables."public.account"] in PATH must be a table.'),
    ('[audit.tables."a.b.c"]\nmask = ["x"]\n', "Invalid table name 'a.b.c': use TABLE or SCHEMA.TABLE."),
    ('[audit.tables."public.acount"]\nmask = ["email"]\n',
     "Table 'public.acount' not found. Run `auditctl status` to list the tables that can be audited. "
     'Correct it in [audit.tables."public.acount"] of'),
    ('[audit.tables."public.account"]\nmask = ["emial"]\n',
     "Column 'emial' not found in table public.account. Correct it in [audit.tables.\"public.account\"] of"),
], ids=["wrong-type", "wrong-bool", "unknown-key", "unknown-table", "unknown-rule-kind", "two-rules",
        "non-string-column", "rules-not-a-table", "bad-table-name", "unknown-audited-table", "unknown-column"])
def test_bad_config_rejected_before_install(orders, cli, tmp_path, text, message):
    config = _write(tmp_path, text)

    result = cli("install", "account", "--config", str(config), dsn=orders.dsn)

    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert message.replace("PATH", str(config)) in lines[0]
    with orders.connect() as connection:
        assert connection.execute("SELECT to_regnamespace('audit')").fetchone()[0] is None
        assert connection.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone()[0] == 0


def test_missing_config_schema_is_error(orders, cli, tmp_path):
    config = _write(tmp_path, '[audit]\nschemas = ["public", "nosuch"]\n')

    result = cli("install", "--config", str(config), dsn=orders.dsn)

    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == (f"Error: Schema 'nosuch' of schemas in [audit] of {config} does not exist in "
                                     "this database; correct the name, or create the schema first.")
    with orders.connect() as connection:
        assert connection.execute("SELECT to_regnamespace('audit')").fetchone()[0] is None


def test_quoted_config_table_matches_exactly(orders, cli, tmp_path):
    config = _write(tmp_path, '[audit.tables.\'"public"."ACCOUNT"\']\nmask = ["notes"]\n')
    (tmp_path / "bare").mkdir()
    bare = _write(tmp_path / "bare", '[audit.tables."public.ACCOUNT"]\nmask = ["notes"]\n')

    quoted = cli("install", "account", "--config", str(config), dsn=orders.dsn)
    unquoted = cli("install", "account", "--config", str(bare), dsn=orders.dsn)

    assert quoted.exit_code == 2
    assert "Table 'public.ACCOUNT' not found." in quoted.stderr
    assert unquoted.exit_code == 0, unquoted.stderr


def test_bad_config_error_is_russian(orders, cli, tmp_path):
    config = _write(tmp_path, '[audit.tables."public.account"]\nmask = ["emial"]\n')
    result = cli("install", "account", "--config", str(config), env={"LANG": "ru_RU.UTF-8"}, dsn=orders.dsn)
    assert result.exit_code == 2
    assert "Исправьте" in result.stderr


def test_config_schemas_choose_prisma_tables(prisma_app, cli, tmp_path):
    config = _write(tmp_path, """
[audit]
schemas = ["public"]
exclude = ["\\\\_prisma\\\\_%"]

[audit.tables."public.User"]
hash = ["email"]
exclude = ["lastLoginAt"]
keep = ["passwordHash"]
""")

    result = cli("install", "--config", str(config), dsn=prisma_app.dsn)

    assert result.exit_code == 0, result.stderr
    with prisma_app.connect() as connection:
        states = {t.entity_type: t.state.value for t in collect_status(connection, "audit").tables}
        connection.execute("""UPDATE "User" SET "lastLoginAt" = now(), "passwordHash" = 'h2', "fullName" = 'N'
                              WHERE "id" = (SELECT min("id") FROM "User")""")
        [update] = events(connection, where="entity_type = 'public.User'")
    assert states["public._prisma_migrations"] == "not_audited"
    assert states["public.User"] == "audited"
    assert states["public.WorkStage"] == "audited"
    assert states["public._ProjectToUser"] == "audited"
    assert "lastLoginAt" not in update["new_values"]
    assert update["new_values"]["passwordHash"] == "h2"
    assert update["new_values"]["fullName"] == "N"


def test_table_arguments_override_config_schemas(prisma_app, cli, tmp_path):
    config = _write(tmp_path, '[audit]\nschemas = ["public"]\n')

    result = cli("install", "Setting", "--config", str(config), dsn=prisma_app.dsn)

    assert result.exit_code == 0, result.stderr
    with prisma_app.connect() as connection:
        audited = [t.entity_type for t in collect_status(connection, "audit").tables if t.state.value == "audited"]
    assert audited == ["public.Setting"]


def test_config_policy_audits_new_tables(db, cli, tmp_path):
    config = _write(tmp_path, '[audit]\nauto_audit = true\nschemas = ["public"]\nexclude = ["tmp\\\\_%"]\n')

    result = cli("install", "--config", str(config), dsn=db.dsn)

    assert result.exit_code == 0, result.stderr
    with db.connect() as connection:
        connection.execute('CREATE TABLE "Счёт" (id int PRIMARY KEY, total int)')
        connection.execute("CREATE TABLE tmp_scratch (id int PRIMARY KEY)")
        connection.execute('INSERT INTO "Счёт" VALUES (1, 10)')
        connection.execute("INSERT INTO tmp_scratch VALUES (1)")
        recorded = [(e["action"], e["entity_type"]) for e in events(connection)]
        report = collect_status(connection, "audit")
    assert recorded == [("INSERT", "public.Счёт")]
    assert report.auto_audit == AutoAuditPolicy(("public",), ("tmp\\_%",))
