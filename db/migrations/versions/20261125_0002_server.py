"""Server: staff credentials, API tokens, idempotent writes, and a commit-ordered event sequence.

Why: the web server needs passwords (argon2id hashes, never the password), revocable tokens
stored hashed, and a record of each Idempotency-Key's first answer so a tablet replaying its
queue changes nothing twice. The event stream needs a number that becomes visible in order:
`availability_events.id` is assigned at insert, so under concurrent writers id 7 can commit
after id 8 and a reader that has moved past 8 would skip 7 forever. `seq` is assigned by a
deferred trigger at commit time under a transaction-level advisory lock, which is released
only after the commit is visible, so every reader sees seq values as a gap-free-in-order
prefix ("seq > cursor" never skips a late commit).

Conflicts are derived from blocks and status, so nothing marks the moment one appears;
`conflict_alerts` remembers the open ones so a refresh can announce new and cleared conflicts
on the event stream (and, later, push them to phones) exactly once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('agent', 'manager', 'analyst', 'admin', 'system'));
ALTER TABLE users ADD COLUMN password_hash text;
ALTER TABLE users ADD COLUMN password_changed_at timestamptz;

CREATE TABLE auth_tokens (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('session', 'api')),
    token_hash    bytea NOT NULL UNIQUE,
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX auth_tokens_user ON auth_tokens (user_id) WHERE revoked_at IS NULL;

CREATE TABLE idempotency_keys (
    user_id        bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key            text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    method         text NOT NULL,
    path           text NOT NULL,
    request_hash   text NOT NULL,
    status_code    integer NOT NULL,
    response       jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

CREATE TABLE conflict_alerts (
    id           bigserial PRIMARY KEY,
    block_id     bigint NOT NULL REFERENCES blocks(id) ON DELETE CASCADE,
    kind         text NOT NULL,
    vehicle_id   bigint NOT NULL REFERENCES vehicles(id),
    location_id  bigint REFERENCES locations(id),
    severity     text NOT NULL CHECK (severity IN ('warning', 'critical')),
    details      jsonb NOT NULL DEFAULT '{}',
    detected_at  timestamptz NOT NULL DEFAULT now(),
    cleared_at   timestamptz
);
CREATE UNIQUE INDEX conflict_alerts_open ON conflict_alerts (block_id, kind)
    WHERE cleared_at IS NULL;

ALTER TABLE availability_events ADD COLUMN seq bigint;
UPDATE availability_events SET seq = id;
CREATE SEQUENCE availability_events_seq_seq OWNED BY availability_events.seq;
SELECT setval('availability_events_seq_seq',
              coalesce((SELECT max(seq) FROM availability_events), 0) + 1, false);
CREATE UNIQUE INDEX events_seq ON availability_events (seq);
CREATE INDEX events_unsequenced ON availability_events (tx_id) WHERE seq IS NULL;

-- Runs once per event row at COMMIT; the first call numbers all of the transaction's events
-- in insert order, the rest find nothing left. The advisory lock serializes only this last
-- step of committing transactions that wrote events, not the transactions themselves.
CREATE FUNCTION fleet_sequence_events() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE CONSTRAINT TRIGGER availability_events_sequence
    AFTER INSERT ON availability_events
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION fleet_sequence_events();
"""

DOWNGRADE = r"""
DROP TRIGGER availability_events_sequence ON availability_events;
DROP FUNCTION fleet_sequence_events();
DROP INDEX events_unsequenced;
DROP INDEX events_seq;
ALTER TABLE availability_events DROP COLUMN seq;
DROP TABLE conflict_alerts;
DROP TABLE idempotency_keys;
DROP TABLE auth_tokens;
ALTER TABLE users DROP COLUMN password_changed_at;
ALTER TABLE users DROP COLUMN password_hash;
UPDATE users SET role = 'agent' WHERE role = 'analyst';
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check
    CHECK (role IN ('agent', 'manager', 'admin', 'system'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
