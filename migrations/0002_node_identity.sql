-- Which node of which cluster this data file belongs to: recorded by the first paxos-node that
-- opens it, checked by every later one, so a data directory cannot be started as another node
-- or joined to another cluster by mistake.
CREATE TABLE node_identity (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    node_id    INTEGER NOT NULL CHECK (node_id >= 0),
    cluster_id TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
) STRICT;
