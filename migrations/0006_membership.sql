-- Membership changes (issue 13). A data directory draws a random incarnation when it is created:
-- the cluster's membership (one row of machine_rows, space 0, written by the entries that change
-- it) records each member's id and incarnation, so a node that comes back under a known id with
-- another incarnation (it lost its disk) is refused as a voter instead of voting as if it had
-- never voted. An existing data directory draws its incarnation now.
ALTER TABLE node_identity ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;
-- 1 when the directory was created to join an existing cluster (paxos-node --join): it starts
-- knowing no membership and learns it from the cluster, on every start until it has.
ALTER TABLE node_identity ADD COLUMN joined INTEGER NOT NULL DEFAULT 0 CHECK (joined IN (0, 1));
UPDATE node_identity SET incarnation = random() WHERE incarnation = 0;
UPDATE node_identity SET incarnation = 1 WHERE incarnation = 0;
