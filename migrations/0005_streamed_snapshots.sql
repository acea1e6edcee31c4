-- Snapshots streamed from a peer in chunks. The rows are staged here, beside machine_rows (which
-- they do not touch), and replace machine_rows in one transaction only when the last chunk is in;
-- snapshot_progress says whose snapshot it is and the last row staged, so a transfer that broke
-- resumes after it.
CREATE TABLE snapshot_staging (
    space INTEGER NOT NULL,
    key   BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (space, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE snapshot_progress (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    source      INTEGER NOT NULL,
    token       INTEGER NOT NULL,
    applied     INTEGER NOT NULL,
    after_space INTEGER,
    after_key   BLOB
) STRICT;

-- The key-value store now reads its rows from here instead of holding them in memory, and finds
-- its least recently used session through an index in space 3 (key: the session's slot and its
-- client id, 8 bytes each, big-endian; empty value). Sessions written before it get their index
-- rows here: a session value starts with its request (8 bytes) and its slot (8 bytes).
INSERT OR IGNORE INTO machine_rows (space, key, value)
SELECT 3, CAST(substr(value, 9, 8) || key AS BLOB), x''
FROM machine_rows WHERE space = 2 AND length(key) = 8 AND length(value) >= 16;

DROP VIEW log_summary;
CREATE VIEW log_summary AS
SELECT promised_round || '.' || promised_node AS promised, max_round, applied, log_start, incarnation,
       (SELECT count(*) FROM log_entries) AS entries,
       (SELECT count(*) FROM machine_rows WHERE space = 1) AS keys,
       (SELECT count(*) FROM machine_rows WHERE space = 2) AS sessions,
       (SELECT count(*) FROM snapshot_staging) AS staged_rows
FROM log_state;
