-- Recovery of a lost acceptor state (PaxosPeer.make(..., recover: true)): a node whose disk was
-- lost asks every other node what it knows before it votes again.
-- recovering: a recovery began and has not finished; the node votes in no instance, across
-- restarts too, until it has.
ALTER TABLE node_state ADD COLUMN recovering INTEGER NOT NULL DEFAULT 0 CHECK (recovering IN (0, 1));
-- vote_floor: written when a recovery finished (NULL before, and on a node that never lost its
-- disk); the acceptor never votes in an instance below it again. Never goes down.
ALTER TABLE node_state ADD COLUMN vote_floor INTEGER CHECK (vote_floor IS NULL OR vote_floor >= 0);
