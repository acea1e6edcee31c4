-- Every ballot this node's proposer used, written in the same transaction as max_round and
-- before any message carrying the ballot leaves the process. A checker (tools/kill-test) reads
-- it to prove that no ballot was used twice across restarts. Rows below min() are pruned with
-- the instances they belong to, so the table stays bounded.
CREATE TABLE ballot_log (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL CHECK (seq >= 0),
    ballot_round INTEGER NOT NULL,
    ballot_node  INTEGER NOT NULL,
    used_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX ballot_log_by_seq ON ballot_log (seq);

-- Ballots as a person reads them, and any ballot used more than once (must stay empty).
CREATE VIEW ballots_used AS
SELECT seq, ballot_round || '.' || ballot_node AS ballot, used_at FROM ballot_log;

CREATE VIEW reused_ballots AS
SELECT ballot_round || '.' || ballot_node AS ballot, count(*) AS uses, group_concat(seq) AS seqs
FROM ballot_log GROUP BY ballot_round, ballot_node HAVING count(*) > 1;
