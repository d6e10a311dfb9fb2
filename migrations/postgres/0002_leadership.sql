-- High availability (PostgreSQL only): who leads, and the fencing epoch.
-- One row. The leader holds a session advisory lock on a dedicated
-- connection; on taking over it increments `epoch` and writes its backend pid;
-- while leading it moves `renewed_at` forward. Every write transaction of a
-- leader checks, under a share lock of this row, that `epoch` is still the one
-- it took over with: a deposed leader's commit is refused.
CREATE TABLE leadership (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    epoch      BIGINT NOT NULL,
    holder     TEXT,         -- "host pid": who took it last, for operators
    holder_pid INTEGER,      -- the leader's backend (pg_backend_pid) holding the lock
    since      TIMESTAMPTZ,  -- when it took over (database clock)
    renewed_at TIMESTAMPTZ   -- its last renewal (database clock)
);
INSERT INTO leadership (id, epoch) VALUES (1, 0);
