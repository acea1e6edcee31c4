-- The replicated log (Multi-Paxos) and the state machine it feeds. One row of log_state holds
-- the acceptor's single promise (it covers every slot), the proposer's max_round, the applied
-- index and the first slot still kept. The applied index and the machine rows it produced are
-- always written in the same transaction.
CREATE TABLE log_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    promised_round INTEGER,
    promised_node  INTEGER,
    max_round      INTEGER NOT NULL DEFAULT 0,
    applied        INTEGER NOT NULL DEFAULT 0,
    log_start      INTEGER NOT NULL DEFAULT 1,
    incarnation    INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO log_state (id) VALUES (1);

-- One row per slot from log_start on: the accepted (or learned) entry, a batch of commands.
CREATE TABLE log_entries (
    slot         INTEGER PRIMARY KEY CHECK (slot >= 1),
    ballot_round INTEGER,
    ballot_node  INTEGER,
    chosen       INTEGER NOT NULL DEFAULT 0 CHECK (chosen IN (0, 1)),
    commands     INTEGER NOT NULL,
    entry        BLOB NOT NULL
) STRICT;

-- The state machine's rows. For the key-value store: space 1 = keys and values, space 2 = client
-- sessions, space 0 = the next client id.
CREATE TABLE machine_rows (
    space INTEGER NOT NULL,
    key   BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (space, key)
) STRICT, WITHOUT ROWID;

-- Every ballot this node's leader candidacy used, written with max_round before the prepare left.
CREATE TABLE log_ballots (
    id           INTEGER PRIMARY KEY,
    ballot_round INTEGER NOT NULL,
    ballot_node  INTEGER NOT NULL,
    used_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE VIEW log_summary AS
SELECT promised_round || '.' || promised_node AS promised, max_round, applied, log_start, incarnation,
       (SELECT count(*) FROM log_entries) AS entries,
       (SELECT count(*) FROM machine_rows WHERE space = 1) AS keys,
       (SELECT count(*) FROM machine_rows WHERE space = 2) AS sessions
FROM log_state;

CREATE VIEW log AS
SELECT slot, ballot_round || '.' || ballot_node AS ballot, chosen, commands, length(entry) AS bytes
FROM log_entries;

CREATE VIEW kv AS
SELECT CAST(key AS TEXT) AS key, CAST(value AS TEXT) AS value, length(value) AS bytes
FROM machine_rows WHERE space = 1;
