"""Every table of the store, as SQLAlchemy Core (one :data:`metadata`).

Types are the portable ones (Integer, String, Text, LargeBinary, Boolean,
DateTime with time zone) so that SQLite and PostgreSQL hold the same schema;
the Alembic revisions in ``migrations/`` create exactly this metadata (a test
compares them). Constraint names follow :data:`NAMING`, so migrations can
refer to them on both databases.

What is kept and why it looks the way it does:

* ``raw_sessions`` + ``raw_chunks``: the wire recording, every byte with its
  time and direction, in arrival order.
* ``messages``: one row per distinct message per analyzer; ``content_hash``
  (sha256 of the raw bytes) is unique per analyzer, so a byte-identical resend
  is recognised. Every arrival, first or repeat, is a ``message_receptions`` row.
* ``results``: one row per analyzer run of a test on a sample. Its
  ``fingerprint`` (analyzer, sample, test, completion time, value, unit,
  flags, status) is unique per analyzer: the same result in a differently
  framed resend links to the existing row (``message_results.repeat``); a
  rerun is a new row pointing at the previous one (``rerun_of_id``).
* ``result_versions``: the content of a result. Versions are only ever
  inserted; a correction is version n+1 with reason, author and time and
  ``supersedes_id`` the old version (unique, so a version is corrected once).
  Triggers (see :func:`guard_statements`) refuse UPDATE and DELETE.
* ``audit_log``: append-only, hash-chained (``hash = sha256(prev_hash +
  canonical JSON of the row)``); ``audit_head`` holds the chain's tip so
  that appends serialise on one row and a truncated tail is detectable.
* ``outbox``: one entry per released result version and destination, with
  its stable MSH-10, attempts, next attempt time and the destination's last
  answer; entries are only ever added, their state moves
  pending -> delivered, or pending -> dead -> pending when a person retries.
* ``user_sections`` and ``analyzers.section``: per-section authorisation; an
  analyzer's section comes from the configuration (kept in step at start), a
  user's sections are given with ``lis-gateway user``.
* ``downloads``: work pushed to analyzers that take it (``order_download``):
  a sample's new or cancelled orders, a rerun request; pending until the
  analyzer acknowledged the whole message, then sent (or not-sent with why).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


def _ts(name: str, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


analyzers = Table(
    "analyzers", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("family", String(100), nullable=False, default=""),
    _ts("created_at"),
    #: the lab section its results belong to (``section`` in the configuration; "" none)
    Column("section", String(100), nullable=False, server_default=""),
)

raw_sessions = Table(
    "raw_sessions", metadata,
    Column("id", Integer, primary_key=True),
    Column("analyzer_id", ForeignKey("analyzers.id"), nullable=False, index=True),
    Column("transport", String(20), nullable=False),  #: tcp, serial, mllp
    Column("peer", String(200), nullable=False, default=""),
    _ts("opened_at"),
    _ts("closed_at", nullable=True),
)

raw_chunks = Table(
    "raw_chunks", metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", ForeignKey("raw_sessions.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("direction", String(3), nullable=False),  #: "in" (from analyzer) or "out"
    _ts("at"),
    Column("data", LargeBinary, nullable=False),
    UniqueConstraint("session_id", "seq"),
)

messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True),
    Column("analyzer_id", ForeignKey("analyzers.id"), nullable=False),
    Column("protocol", String(10), nullable=False),  #: astm, hl7, au
    Column("content_hash", String(64), nullable=False),  #: sha256 hex of raw
    Column("raw", LargeBinary, nullable=False),
    Column("raw_session_id", ForeignKey("raw_sessions.id"), nullable=True),
    _ts("received_at"),
    #: JSON list: what was off with the message itself (no L record, deviations)
    Column("problems", Text, nullable=False, server_default="[]"),
    UniqueConstraint("analyzer_id", "content_hash"),
)

message_receptions = Table(
    "message_receptions", metadata,
    Column("id", Integer, primary_key=True),
    Column("message_id", ForeignKey("messages.id"), nullable=False, index=True),
    Column("raw_session_id", ForeignKey("raw_sessions.id"), nullable=True),
    _ts("received_at"),
    Column("repeat", Boolean, nullable=False),
)

samples = Table(
    "samples", metadata,
    Column("id", Integer, primary_key=True),
    Column("accession", String(100), nullable=False, unique=True),  #: barcode
    Column("hospital_id", String(100), nullable=True, index=True),
    Column("national_id", String(100), nullable=True, index=True),
    Column("insurance_card", String(100), nullable=True),
    _ts("created_at"),
    #: from the HIS order (patient data: never logged)
    Column("family_name", String(100), nullable=False, server_default=""),
    Column("middle_name", String(100), nullable=False, server_default=""),
    Column("given_name", String(100), nullable=False, server_default=""),
    Column("birth_date", Date, nullable=True),
    Column("sex", String(1), nullable=False, server_default=""),
    Column("visit_number", String(100), nullable=False, server_default=""),
    #: "" (no order yet), "his" (an order arrived), "analyzer" (from the analyzer's
    #: own patient record: ``unsolicited = true``; an HIS order replaces it)
    Column("patient_source", String(10), nullable=False, server_default=""),
    #: the analyzer whose patient record filled the patient ("analyzer" source only)
    Column("patient_analyzer", String(100), nullable=False, server_default=""),
)

orders = Table(
    "orders", metadata,
    Column("id", Integer, primary_key=True),
    Column("sample_id", ForeignKey("samples.id"), nullable=False),
    Column("test_code", String(100), nullable=False),
    Column("placer_order", String(100), nullable=False, default=""),
    Column("status", String(20), nullable=False, default="ordered"),
    _ts("ordered_at"),
    UniqueConstraint("sample_id", "test_code", "placer_order"),
    Column("priority", String(1), nullable=False, server_default="R"),  #: R routine, S stat
    _ts("collected_at", nullable=True),
    Column("order_message_id", ForeignKey("order_messages.id"), nullable=True),
)

order_messages = Table(
    "order_messages", metadata,
    Column("id", Integer, primary_key=True),
    Column("raw", LargeBinary, nullable=False),  #: as received, refused ones too
    Column("control_id", String(100), nullable=False),  #: MSH-10
    Column("accepted", Boolean, nullable=False),
    Column("problems", Text, nullable=False),  #: JSON list; why it was refused
    Column("source", String(100), nullable=False),  #: the listener (peer address)
    _ts("received_at"),
)

results = Table(
    "results", metadata,
    Column("id", Integer, primary_key=True),
    Column("analyzer_id", ForeignKey("analyzers.id"), nullable=False),
    Column("sample_id", ForeignKey("samples.id"), nullable=False),
    Column("message_id", ForeignKey("messages.id"), nullable=False),  #: first seen in
    Column("test_code", String(100), nullable=False),
    Column("completed_at_raw", String(40), nullable=False, default=""),
    Column("fingerprint", String(64), nullable=False),
    Column("rerun_of_id", ForeignKey("results.id"), nullable=True),
    _ts("created_at"),
    #: a QC run's result: kept, never in the patient lifecycle, never sent to the HIS
    Column("qc", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("analyzer_id", "fingerprint"),
    Index("ix_results_sample_test", "sample_id", "test_code"),
    Index("ix_results_analyzer_qc", "analyzer_id", "qc", "message_id"),  #: latest QC run
)

message_results = Table(
    "message_results", metadata,
    Column("message_id", ForeignKey("messages.id"), primary_key=True),
    Column("result_id", ForeignKey("results.id"), primary_key=True),
    Column("repeat", Boolean, nullable=False),
)

result_versions = Table(
    "result_versions", metadata,
    Column("id", Integer, primary_key=True),
    Column("result_id", ForeignKey("results.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("value_raw", Text, nullable=False),
    Column("number", String(60), nullable=True),  #: exact decimal, as text
    Column("unit_raw", String(60), nullable=False),
    Column("unit_ucum", String(60), nullable=False),
    Column("code", String(100), nullable=False),
    Column("loinc", String(20), nullable=False),
    Column("flags", Text, nullable=False),  #: JSON list (HL7 table 0078)
    Column("instrument_flags", Text, nullable=False),  #: JSON list
    Column("reference_range", String(100), nullable=False),
    Column("status", String(10), nullable=False),
    Column("critical", String(4), nullable=False),
    Column("problems", Text, nullable=False),  #: JSON list
    Column("mapping_version", String(100), nullable=False),
    _ts("result_time", nullable=True),
    Column("reason", Text, nullable=False),  #: "received" for version 1
    Column("author", String(100), nullable=False),  #: "analyzer:<name>" or a username
    _ts("created_at"),
    Column("supersedes_id", ForeignKey("result_versions.id"), nullable=True, unique=True),
    UniqueConstraint("result_id", "version"),
)

rule_outcomes = Table(
    "rule_outcomes", metadata,
    Column("id", Integer, primary_key=True),
    Column("result_version_id", ForeignKey("result_versions.id"), nullable=False,
           index=True),
    Column("rule", String(100), nullable=False),
    Column("outcome", String(20), nullable=False),  #: pass, hold, fail
    Column("detail", Text, nullable=False, default=""),
    _ts("at"),
    Column("kind", String(30), nullable=False, server_default=""),  #: the rule's kind
    Column("rule_set_version", String(100), nullable=False, server_default=""),
)

roles = Table(
    "roles", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False, unique=True),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False, default=""),
    Column("active", Boolean, nullable=False, default=True),
    _ts("created_at"),
    Column("password_hash", String(255), nullable=True),  #: argon2id; None: cannot log in
    #: practising-certificate number (chứng chỉ hành nghề), XML4 MA_BS_DOC_KQ; "" unknown
    Column("certificate_number", String(50), nullable=False, server_default=""),
)

user_roles = Table(
    "user_roles", metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("role_id", ForeignKey("roles.id"), primary_key=True),
)

#: The lab sections (haematology, biochemistry, ...) whose results a user may act on.
user_sections = Table(
    "user_sections", metadata,
    Column("user_id", ForeignKey("users.id"), primary_key=True),
    Column("section", String(100), primary_key=True),
)

validation_events = Table(
    "validation_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("result_version_id", ForeignKey("result_versions.id"), nullable=False,
           index=True),
    Column("action", String(20), nullable=False),  #: validated, rejected, rerun, released
    Column("user_id", ForeignKey("users.id"), nullable=True),
    Column("comment", Text, nullable=False, default=""),
    _ts("at"),
    # The lifecycle transition (lis_gateway.lifecycle.Transition); "" on rows written
    # before revision 0002 (they are not part of a replayable history).
    Column("from_state", String(20), nullable=False, server_default=""),
    Column("to_state", String(20), nullable=False, server_default=""),
    Column("actor_kind", String(10), nullable=False, server_default=""),  #: user, rule, system
    Column("actor", String(100), nullable=False, server_default=""),  #: username or rule id
    Column("actor_roles", String(200), nullable=False, server_default=""),  #: comma-separated
    Column("rule_set_version", String(100), nullable=False, server_default=""),
    Column("reasons", Text, nullable=False, server_default="[]"),  #: JSON list (holds)
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),  #: also the sending order
    Column("result_version_id", ForeignKey("result_versions.id"), nullable=False),
    Column("destination", String(100), nullable=False),
    Column("sample_id", ForeignKey("samples.id"), nullable=False),  #: a sample's entries in order
    Column("control_id", String(20), nullable=False),  #: MSH-10, stable across resends
    Column("state", String(12), nullable=False),  #: pending, delivered, dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    _ts("next_attempt_at", nullable=True),  #: pending only
    Column("last_status", String(20), nullable=False, server_default=""),  #: DeliveryStatus
    Column("last_error", Text, nullable=False, server_default=""),  #: the destination's text
    _ts("created_at"),
    _ts("updated_at"),
    _ts("delivered_at", nullable=True),
    #: "result" (the version itself) or "retraction" (tells the destination to delete it)
    Column("kind", String(12), nullable=False, server_default="result"),
    UniqueConstraint("result_version_id", "destination", "kind"),
    Index("ix_outbox_destination_state", "destination", "state"),
)

downloads = Table(
    "downloads", metadata,
    Column("id", Integer, primary_key=True),  #: also the sending order
    Column("analyzer", String(100), nullable=False),  #: the configured link name
    Column("accession", String(100), nullable=False),
    Column("action", String(10), nullable=False),  #: new, cancel, rerun
    Column("test_code", String(100), nullable=False, server_default=""),  #: rerun: local code
    Column("state", String(12), nullable=False),  #: pending, sent, not-sent
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("payload", LargeBinary, nullable=True),  #: the E1394 text last sent
    _ts("created_at"),
    _ts("updated_at"),
    Index("ix_downloads_analyzer_state", "analyzer", "state"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("at", String(40), nullable=False),  #: ISO 8601 UTC, hashed as stored
    Column("actor", String(100), nullable=False),  #: who
    Column("action", String(100), nullable=False),  #: what
    Column("target", String(200), nullable=False),
    Column("detail", Text, nullable=False),  #: canonical JSON
    Column("source", String(200), nullable=False),  #: from where (IP, tty, "system")
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    #: the audit page searches by who, what about and when (revision 0011)
    Index("ix_audit_log_actor", "actor"),
    Index("ix_audit_log_target", "target"),
    Index("ix_audit_log_at", "at"),
)

audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True),  #: always 1
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

GENESIS_HASH = "0" * 64

#: Tables whose rows are never updated or deleted (enforced by triggers).
APPEND_ONLY = ("result_versions", "audit_log", "raw_chunks", "message_receptions")


def guard_statements(dialect: str) -> list[str]:
    """DDL for triggers refusing UPDATE/DELETE on :data:`APPEND_ONLY` tables.

    Args:
        dialect: ``"sqlite"`` or ``"postgresql"``.

    Returns:
        The statements to run after the tables exist (an empty list otherwise).
    """
    out: list[str] = []
    if dialect == "postgresql":
        out.append(
            "CREATE OR REPLACE FUNCTION lis_append_only() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'append-only table %', TG_TABLE_NAME; END $$ LANGUAGE plpgsql")
        for table in APPEND_ONLY:
            out.append(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON "
                       f"{table} FOR EACH ROW EXECUTE FUNCTION lis_append_only()")
    elif dialect == "sqlite":
        for table in APPEND_ONLY:
            for op in ("UPDATE", "DELETE"):
                out.append(f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, 'append-only table {table}'); END")
    return out


def unguard_statements(dialect: str) -> list[str]:
    """DDL dropping what :func:`guard_statements` created (for downgrades)."""
    out: list[str] = []
    for table in APPEND_ONLY:
        if dialect == "postgresql":
            out.append(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        elif dialect == "sqlite":
            out += [f"DROP TRIGGER IF EXISTS {table}_no_{op}" for op in ("update", "delete")]
    if dialect == "postgresql":
        out.append("DROP FUNCTION IF EXISTS lis_append_only()")
    return out
