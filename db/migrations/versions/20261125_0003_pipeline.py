"""Pipeline: feed files and their rejects, contracts and feed records, notifications, archives.

Why: the systems around the fleet (rental contracts, maintenance, returns, transfers) send
files. A file is remembered by its content hash so a second delivery changes nothing, and
every bad row is kept with its line, raw values and reason instead of vanishing. Each record
is remembered by its external id with the newest version seen, so a replay or a late older
version never rolls a contract back; `applied_version` says how far its effect on the fleet
has got (blocks, statuses, events go through the engine like any staff change).

Notifications leave through an outbox with one row per alert and destination
(`dedupe_key` unique), so a retried run never sends an alert twice. `pipeline_state` keeps
the flows' watermarks (which event was last turned into notifications or materialized).
History older than 90 days moves to Parquet; `history_archives` records each verified file,
and a rollback's link to an archived change is kept in the archive, not as a dangling key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE feed_files (
    id              bigserial PRIMARY KEY,
    feed            text NOT NULL
                    CHECK (feed IN ('contracts', 'maintenance', 'returns', 'transfers')),
    name            text NOT NULL,
    format          text NOT NULL CHECK (format IN ('csv', 'ndjson')),
    content_sha256  bytea NOT NULL,
    size_bytes      bigint NOT NULL CHECK (size_bytes >= 0),
    received_at     timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    rows_total      integer NOT NULL DEFAULT 0,
    rows_applied    integer NOT NULL DEFAULT 0,
    rows_stale      integer NOT NULL DEFAULT 0,
    rows_rejected   integer NOT NULL DEFAULT 0,
    rows_conflicted integer NOT NULL DEFAULT 0,
    UNIQUE (feed, content_sha256)
);

-- Quarantine: a row that could not be loaded, with where it was and why.
CREATE TABLE feed_rejects (
    id          bigserial PRIMARY KEY,
    file_id     bigint NOT NULL REFERENCES feed_files(id) ON DELETE CASCADE,
    feed        text NOT NULL,
    line        integer NOT NULL CHECK (line >= 1),
    raw         jsonb NOT NULL,
    reason      text NOT NULL CHECK (length(reason) > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feed_rejects_file ON feed_rejects (file_id, line);
CREATE INDEX feed_rejects_time ON feed_rejects (created_at);

-- The newest known version of each rental contract and how far its effect has got.
CREATE TABLE contracts (
    id                  bigserial PRIMARY KEY,
    external_id         text NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 100),
    version             bigint NOT NULL CHECK (version >= 1),
    updated_at          timestamptz NOT NULL,
    event               text NOT NULL CHECK (
                            event IN ('created', 'modified', 'extended', 'closed', 'cancelled')),
    vehicle_id          bigint NOT NULL REFERENCES vehicles(id),
    customer_id         bigint REFERENCES customers(id),
    customer_name       text NOT NULL,
    customer_phone      text,
    customer_email      text,
    pickup_location_id  bigint NOT NULL REFERENCES locations(id),
    return_location_id  bigint NOT NULL REFERENCES locations(id),
    pickup_at           timestamptz NOT NULL,
    return_at           timestamptz NOT NULL,
    block_id            bigint REFERENCES blocks(id),
    applied_version     bigint NOT NULL DEFAULT 0,
    outcome             text,
    file_id             bigint REFERENCES feed_files(id) ON DELETE SET NULL,
    line                integer,
    received_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contracts_period CHECK (return_at > pickup_at)
);
CREATE INDEX contracts_pending ON contracts (id) WHERE applied_version < version;
CREATE INDEX contracts_block ON contracts (block_id) WHERE block_id IS NOT NULL;
CREATE INDEX contracts_vehicle ON contracts (vehicle_id, pickup_at);

-- Maintenance jobs, returns and transfers from the other systems, one row per external id.
CREATE TABLE feed_records (
    feed             text NOT NULL CHECK (feed IN ('maintenance', 'returns', 'transfers')),
    external_id      text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 100),
    version          bigint NOT NULL CHECK (version >= 1),
    updated_at       timestamptz NOT NULL,
    event            text NOT NULL,
    vehicle_id       bigint NOT NULL REFERENCES vehicles(id),
    data             jsonb NOT NULL,
    block_id         bigint REFERENCES blocks(id),
    applied_version  bigint NOT NULL DEFAULT 0,
    outcome          text,
    file_id          bigint REFERENCES feed_files(id) ON DELETE SET NULL,
    line             integer,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feed, external_id)
);
CREATE INDEX feed_records_pending ON feed_records (feed, updated_at)
    WHERE applied_version < version;

CREATE TABLE notification_outbox (
    id               bigserial PRIMARY KEY,
    dedupe_key       text NOT NULL UNIQUE,
    channel          text NOT NULL CHECK (channel IN ('email', 'webhook', 'push')),
    target           text NOT NULL,
    subject          text NOT NULL,
    body             jsonb NOT NULL,
    event_seq        bigint,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX notification_outbox_due ON notification_outbox (next_attempt_at)
    WHERE status = 'pending';

CREATE TABLE pipeline_state (
    name        text PRIMARY KEY,
    value       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE history_archives (
    id           bigserial PRIMARY KEY,
    table_name   text NOT NULL CHECK (table_name IN ('vehicle_status_log', 'availability_events')),
    month        date NOT NULL CHECK (extract(day FROM month) = 1),
    path         text NOT NULL,
    row_count    bigint NOT NULL CHECK (row_count >= 0),
    min_id       bigint,
    max_id       bigint,
    sha256       text NOT NULL,
    archived_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (table_name, path)
);

-- A feed load may write tens of thousands of events in one transaction. The numbering trigger
-- runs once per event at commit; the first call numbers them all, and the rest used to look
-- for unnumbered rows again through an index still full of the rows' old versions, which made
-- a big commit quadratic. Each call now first checks how far this transaction is numbered.
CREATE OR REPLACE FUNCTION fleet_sequence_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    upto bigint;
BEGIN
    IF NEW.id <= coalesce(nullif(current_setting('fleet.sequenced_upto', true), ''), '0')::bigint
    THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(7340033);
    WITH numbered AS (
        UPDATE availability_events e
           SET seq = n.seq
          FROM (SELECT id, nextval('availability_events_seq_seq') AS seq
                  FROM (SELECT id FROM availability_events
                         WHERE tx_id = pg_current_xact_id() AND seq IS NULL
                         ORDER BY id) o) n
         WHERE e.id = n.id
        RETURNING e.id)
    SELECT max(id) INTO upto FROM numbered;
    PERFORM set_config('fleet.sequenced_upto', greatest(upto, NEW.id)::text, true);
    RETURN NULL;
END $$;

-- A rollback may outlive the change it reverted in PostgreSQL (that one moves to Parquet).
ALTER TABLE vehicle_status_log DROP CONSTRAINT vehicle_status_log_reverts_log_id_fkey;
ALTER TABLE vehicle_status_log ADD CONSTRAINT vehicle_status_log_reverts_log_id_fkey
    FOREIGN KEY (reverts_log_id) REFERENCES vehicle_status_log(id) ON DELETE SET NULL;
"""

DOWNGRADE = r"""
CREATE OR REPLACE FUNCTION fleet_sequence_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7340033);
    UPDATE availability_events e
       SET seq = n.seq
      FROM (SELECT id, nextval('availability_events_seq_seq') AS seq
              FROM (SELECT id FROM availability_events
                     WHERE tx_id = pg_current_xact_id() AND seq IS NULL
                     ORDER BY id) o) n
     WHERE e.id = n.id;
    RETURN NULL;
END $$;
ALTER TABLE vehicle_status_log DROP CONSTRAINT vehicle_status_log_reverts_log_id_fkey;
ALTER TABLE vehicle_status_log ADD CONSTRAINT vehicle_status_log_reverts_log_id_fkey
    FOREIGN KEY (reverts_log_id) REFERENCES vehicle_status_log(id);
DROP TABLE history_archives;
DROP TABLE pipeline_state;
DROP TABLE notification_outbox;
DROP TABLE feed_records;
DROP TABLE contracts;
DROP TABLE feed_rejects;
DROP TABLE feed_files;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
