-- High availability: Argos webhooks received by a standby, waiting for the
-- leader (it drains them and fetches those submissions). A hint is only a
-- hint: one lost here is found by the leader's next poll.
CREATE TABLE ingest_hints (
    id            BIGSERIAL PRIMARY KEY,
    submission_id TEXT NOT NULL,
    trigger       TEXT NOT NULL,
    received_at   TEXT NOT NULL
);
