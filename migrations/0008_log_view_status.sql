-- The log view's chosen column read the stored flag only. The flag is written when a node learns
-- an entry it did not hold; a slot whose accepted entry turns out chosen keeps 0 (knowing it is a
-- cache the applied index covers), so nearly every applied slot showed chosen = 0. A slot at or
-- below the applied index was chosen (only chosen entries are applied): the view says so, and
-- its status tells apart what is applied, chosen and only accepted.
DROP VIEW log;
CREATE VIEW log AS
SELECT slot, ballot_round || '.' || ballot_node AS ballot,
       CASE WHEN chosen = 1 OR slot <= (SELECT applied FROM log_state) THEN 1 ELSE 0 END AS chosen,
       CASE WHEN slot <= (SELECT applied FROM log_state) THEN 'applied'
            WHEN chosen = 1 THEN 'chosen'
            ELSE 'accepted' END AS status,
       commands, length(entry) AS bytes
FROM log_entries;
