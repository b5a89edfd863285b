"""Versioned schema of the SQLite store: migration N brings `PRAGMA user_version` from N-1 to N.

The tables are a contract operators query: add columns and tables in new migrations, never rename.
"""

from __future__ import annotations


def _iso_ms(column: str) -> str:
    """SQL: `column` as `2025-12-05T00:22:02.000Z` if it reads as a date (SQLite's date functions
    take naive, `Z` and `+HH:MM` forms and convert to UTC), else unchanged (NULL stays NULL)."""
    form = f"strftime('%Y-%m-%dT%H:%M:%fZ', {column})"
    date = "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'"
    return f"CASE WHEN {column} GLOB {date} AND {form} IS NOT NULL THEN {form} ELSE {column} END"


MIGRATIONS: tuple[str, ...] = (
    # 1: products, runs, token events, persisted tokens, per-source state. `products` keeps its
    # rowid: rows carry kilobytes of payload, which WITHOUT ROWID tables store 4x slower.
    """
    CREATE TABLE products (
        source          TEXT NOT NULL,
        sku             TEXT NOT NULL,
        id              INTEGER,
        name            TEXT,
        price           REAL,
        status          INTEGER,
        type_id         TEXT,
        updated_at      TEXT,
        payload         TEXT NOT NULL,
        content_hash    TEXT NOT NULL,
        first_seen_at   TEXT NOT NULL,
        last_synced_at  TEXT NOT NULL,
        deleted_at      TEXT,
        PRIMARY KEY (source, sku)
    );
    CREATE INDEX products_source_updated ON products (source, updated_at);

    CREATE TABLE sync_runs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        source          TEXT NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('full', 'incremental')),
        started_at      TEXT NOT NULL,
        finished_at     TEXT,
        status          TEXT NOT NULL
                        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
        pages           INTEGER NOT NULL DEFAULT 0,
        items_seen      INTEGER NOT NULL DEFAULT 0,
        items_created   INTEGER NOT NULL DEFAULT 0,
        items_updated   INTEGER NOT NULL DEFAULT 0,
        items_unchanged INTEGER NOT NULL DEFAULT 0,
        items_deleted   INTEGER NOT NULL DEFAULT 0,
        requests        INTEGER NOT NULL DEFAULT 0,
        retries         INTEGER NOT NULL DEFAULT 0,
        rate_limited    INTEGER NOT NULL DEFAULT 0,
        error           TEXT
    );
    CREATE INDEX sync_runs_source ON sync_runs (source, id);
    CREATE INDEX sync_runs_status ON sync_runs (status);

    CREATE TABLE token_events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        source      TEXT NOT NULL,
        at          TEXT NOT NULL,
        event       TEXT NOT NULL,
        expires_at  TEXT,
        fingerprint TEXT,
        detail      TEXT
    );
    CREATE INDEX token_events_source ON token_events (source, id);

    CREATE TABLE tokens (
        cache_key     TEXT PRIMARY KEY,
        access_token  TEXT NOT NULL,
        refresh_token TEXT,
        expires_at    TEXT,
        issued_at     TEXT,
        updated_at    TEXT NOT NULL
    );

    CREATE TABLE source_state (
        source        TEXT PRIMARY KEY,
        needs_reauth  INTEGER NOT NULL DEFAULT 0,
        reauth_reason TEXT,
        watermark     TEXT,
        checkpoint    TEXT,
        updated_at    TEXT NOT NULL
    );
    """,
    # 2: incremental sync, resumable full scans and tombstones; run ownership for crash detection.
    """
    CREATE TABLE full_scan_seen (
        source  TEXT NOT NULL,
        scan_id INTEGER NOT NULL,
        sku     TEXT NOT NULL,
        PRIMARY KEY (source, scan_id, sku)
    ) WITHOUT ROWID;
    ALTER TABLE sync_runs ADD COLUMN owner TEXT;
    """,
    # 3: every stored time in one form, ISO-8601 UTC with milliseconds (`...T00:22:02.000Z`):
    # Adobe's `updated_at` was stored as Magento sends it (`2025-12-05 00:22:02`), syncd's own
    # times to the second. One UPDATE per table (a product row is rewritten once); text that is
    # no date is left as it is.
    "\n".join(
        f"UPDATE {table} SET "
        + ", ".join(f"{column} = {_iso_ms(column)}" for column in columns)
        + ";"
        for table, columns in (
            ("products", ("updated_at", "first_seen_at", "last_synced_at", "deleted_at")),
            ("sync_runs", ("started_at", "finished_at")),
            ("token_events", ("at", "expires_at")),
            ("tokens", ("expires_at", "issued_at", "updated_at")),
            ("source_state", ("updated_at",)),
        )
    ),
    # 4: the change feed (docs/CHANGES.md). `product_changes` is the outbox written in the same
    # transaction as the products it describes; `change_sequences` hands out each source's seqs
    # (a counter row, so they have no gaps) and remembers what retention pruned, so that a reader
    # behind it gets an error instead of a silent gap; `webhook_cursors` is what each webhook
    # has delivered. The outbox keeps its rowid for the same reason as `products`. `op` is one of
    # created, updated, deleted, revived (store.base.ChangeOp); no CHECK: it cost 2 us an entry,
    # 40% of the insert, and only the store writes it.
    """
    CREATE TABLE product_changes (
        source       TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        sku          TEXT NOT NULL,
        op           TEXT NOT NULL,
        run_id       INTEGER,
        at           TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        payload      TEXT,
        PRIMARY KEY (source, seq)
    );

    CREATE TABLE change_sequences (
        source         TEXT PRIMARY KEY,
        last_seq       INTEGER NOT NULL DEFAULT 0,
        pruned_through INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE webhook_cursors (
        webhook     TEXT NOT NULL,
        source      TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        updated_at  TEXT NOT NULL,
        PRIMARY KEY (webhook, source)
    );
    """,
    # 5: replicas sharing credentials and sources (docs/SCALING.md). A token row carries a version
    # (bumped by every write) and the refresh intent committed before a refresh is sent; each
    # token event names the replica that caused it; `source_rates` keeps a source's adaptive rate
    # and pending Retry-After pause for whoever runs it next.
    """
    ALTER TABLE tokens ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tokens ADD COLUMN refreshing_by TEXT;
    ALTER TABLE tokens ADD COLUMN refresh_started_at TEXT;
    ALTER TABLE token_events ADD COLUMN owner TEXT;
    CREATE TABLE source_rates (
        source        TEXT PRIMARY KEY,
        rate          REAL,
        paused_until  TEXT,
        updated_at    TEXT NOT NULL
    );
    """,
    # 6: the outbox clustered on its key (WITHOUT ROWID). Entries are appended in (source, seq)
    # order and, by default, hold no payload (they refer to the product row's), so they are small
    # rows: one B-tree insert an entry instead of two (the rowid table and its key's index), which
    # was most of what the feed cost a full sync.
    """
    CREATE TABLE product_changes_new (
        source       TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        sku          TEXT NOT NULL,
        op           TEXT NOT NULL,
        run_id       INTEGER,
        at           TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        payload      TEXT,
        PRIMARY KEY (source, seq)
    ) WITHOUT ROWID;
    INSERT INTO product_changes_new SELECT source, seq, sku, op, run_id, at, content_hash, payload
        FROM product_changes;
    DROP TABLE product_changes;
    ALTER TABLE product_changes_new RENAME TO product_changes;
    """,
    # 7: history retention ([store] history_retention). What pruning removed from `token_events`,
    # counted per (source, event), so that the counts behind the `syncd_token_events` counter
    # never go down when old events are deleted.
    """
    CREATE TABLE token_event_tallies (
        source  TEXT NOT NULL,
        event   TEXT NOT NULL,
        pruned  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, event)
    ) WITHOUT ROWID;
    """,
    # 8: no `(source, updated_at)` index on products. No statement of syncd's reads through it
    # (rows are found by `(source, sku)`, the primary key), and it cost every page transaction
    # most of its written pages: a page's 100 products land at 100 random places in it, one
    # B-tree leaf each, where the rows themselves fill a few consecutive leaves. An operator who
    # filters by `updated_at` often can create it again; syncd leaves a same-named index alone.
    """
    DROP INDEX IF EXISTS products_source_updated;
    """,
    # 9: a source's call window (AmeriCommerce) in `source_rates`: when the current window ends,
    # the store's limit, syncd's own calls in it and how well its start is known, so that a
    # restarted process or another owner does not spend that window's share a second time.
    """
    ALTER TABLE source_rates ADD COLUMN window_ends_at TEXT;
    ALTER TABLE source_rates ADD COLUMN window_limit INTEGER;
    ALTER TABLE source_rates ADD COLUMN window_calls INTEGER;
    ALTER TABLE source_rates ADD COLUMN window_phase_width REAL;
    """,
    # 10: where the search for an unconfigured source's limit stands (the highest rate proven
    # accepted, the rate that drew a 429, the most the store's burst was shown to hold, how long
    # it has been held there), so that the next run starts at the limit it found instead of
    # drawing 429s to find it again, and its probes stay due across short runs.
    """
    ALTER TABLE source_rates ADD COLUMN found_lower REAL;
    ALTER TABLE source_rates ADD COLUMN found_upper REAL;
    ALTER TABLE source_rates ADD COLUMN found_burst REAL;
    ALTER TABLE source_rates ADD COLUMN found_held REAL;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> list[str]:
    """The statements of a migration script, one by one (aiosqlite runs one at a time)."""
    return [s.strip() for s in script.split(";") if s.strip()]
