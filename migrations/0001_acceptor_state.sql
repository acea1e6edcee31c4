-- swift-paxos: durable acceptor, learner and proposer state of one node.
-- Ballots are stored as (round, node) pairs and shown as 'round.node' by the views below.

-- One row: what this node keeps about itself.
CREATE TABLE node_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    -- The proposer's highest round seen or used; committed before any message carrying a
    -- ballot of that round leaves the process, so a restarted node never reuses a ballot.
    max_round       INTEGER NOT NULL DEFAULT 0 CHECK (max_round >= 0),
    -- min(): instances below it are forgotten and never voted on again.
    forgotten_below INTEGER NOT NULL DEFAULT 0 CHECK (forgotten_below >= 0)
) STRICT;
INSERT INTO node_state (id) VALUES (1);

-- The highest done(seq) known for each peer (this node included).
CREATE TABLE peer_done (
    peer_id  INTEGER PRIMARY KEY,
    done_seq INTEGER NOT NULL CHECK (done_seq >= -1)
) STRICT;

-- One row per instance at or above forgotten_below that this node has state for.
CREATE TABLE instances (
    seq              INTEGER PRIMARY KEY CHECK (seq >= 0),
    -- The highest ballot this acceptor promised (phase 1) or accepted under (phase 2).
    promised_round   INTEGER,
    promised_node    INTEGER,
    -- The highest-ballot proposal this acceptor accepted (cleared once the instance is decided).
    accepted_round   INTEGER,
    accepted_node    INTEGER,
    accepted_value   BLOB,
    accepted_is_text INTEGER NOT NULL DEFAULT 0 CHECK (accepted_is_text IN (0, 1)),
    -- The decided value, once known.
    decided_value    BLOB,
    decided_is_text  INTEGER NOT NULL DEFAULT 0 CHECK (decided_is_text IN (0, 1)),
    CHECK ((promised_round IS NULL) = (promised_node IS NULL)),
    CHECK ((accepted_round IS NULL) = (accepted_node IS NULL)),
    CHECK ((accepted_round IS NULL) = (accepted_value IS NULL))
) STRICT;

-- Instances as a person reads them: ballots as 'round.node', values as text when they are UTF-8.
CREATE VIEW instance_state AS
SELECT
    seq,
    CASE WHEN decided_value IS NOT NULL THEN 'decided' ELSE 'pending' END AS fate,
    CASE WHEN promised_round IS NULL THEN NULL ELSE promised_round || '.' || promised_node END AS promised,
    CASE WHEN accepted_round IS NULL THEN NULL ELSE accepted_round || '.' || accepted_node END AS accepted,
    CASE WHEN accepted_is_text = 1 THEN CAST(accepted_value AS TEXT) END AS accepted_text,
    length(accepted_value) AS accepted_bytes,
    CASE WHEN decided_is_text = 1 THEN CAST(decided_value AS TEXT) END AS decided_text,
    length(decided_value) AS decided_bytes
FROM instances;

-- What is decided.
CREATE VIEW decisions AS
SELECT seq, decided_text AS value, decided_bytes AS bytes FROM instance_state WHERE fate = 'decided';

-- The node's own counters in one row, min() included.
CREATE VIEW node_summary AS
SELECT
    max_round,
    forgotten_below AS min,
    (SELECT max(seq) FROM instances) AS max_seq_stored,
    (SELECT count(*) FROM instances) AS instances_stored,
    (SELECT count(*) FROM instances WHERE decided_value IS NOT NULL) AS decided_stored
FROM node_state;
