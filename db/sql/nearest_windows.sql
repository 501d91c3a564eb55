-- For each car of the category on (or arriving at) the lot: the earliest moment at or after
-- :start, within the horizon, from which it is free for :len. Candidate moments are the
-- request itself and the end of every block after it; a moment works when no live block
-- overlaps [moment, moment + len). The caller re-checks each with the full search.
WITH moments AS (
    SELECT v.id AS vehicle_id, CAST(:start AS timestamptz) AS s
    FROM vehicles v JOIN vehicle_status_realtime st ON st.vehicle_id = v.id
    WHERE v.category_id = :cat AND v.active AND v.features @> CAST(:features AS text[])
      AND st.location_id = :loc
    UNION
    SELECT b.vehicle_id, upper(b.blocked)
    FROM blocks b JOIN vehicles v ON v.id = b.vehicle_id
    JOIN vehicle_status_realtime st ON st.vehicle_id = v.id
    WHERE v.category_id = :cat AND v.active AND v.features @> CAST(:features AS text[])
      AND (st.location_id = :loc OR b.end_location_id = :loc)
      AND b.state IN ('active', 'completed')
      AND NOT (b.kind = 'hold' AND b.expires_at <= clock_timestamp())
      AND upper(b.blocked) >= :start
      AND upper(b.blocked) < CAST(:start AS timestamptz) + CAST(:horizon AS interval)
)
SELECT DISTINCT ON (m.vehicle_id) m.vehicle_id, m.s
FROM moments m
WHERE NOT EXISTS (
    SELECT 1 FROM blocks b2
    WHERE b2.vehicle_id = m.vehicle_id
      AND b2.state IN ('active', 'completed')
      AND NOT (b2.kind = 'hold' AND b2.expires_at <= clock_timestamp())
      AND b2.blocked && tstzrange(m.s, m.s + CAST(:len AS interval))
)
ORDER BY m.vehicle_id, m.s
