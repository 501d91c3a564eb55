-- For each car of the category on (or arriving at) the lot: the earliest moment at or after
-- :start, within the horizon, from which it is free for :len. Candidate moments are the
-- request itself and the end of every block after it; a moment works when no live block
-- overlaps [moment, moment + len). The caller re-checks each for that car.
-- Candidates come from the lot's own index (status_location) and from moves arriving there
-- (blocks_arrivals), so the work grows with the lot, not with the category fleet-wide.
WITH cars AS (
    SELECT st.vehicle_id
    FROM vehicle_status_realtime st
    WHERE st.location_id = :loc AND st.category_id = :cat
    UNION
    SELECT a.vehicle_id
    FROM blocks a
    WHERE a.end_location_id = :loc AND a.category_id = :cat
      AND a.state IN ('active', 'completed') AND a.moves
      AND upper(a.period) >= CAST(:start AS timestamptz) - interval '1 day'
      AND upper(a.period) < CAST(:start AS timestamptz) + CAST(:horizon AS interval)
),
eligible AS (
    SELECT c.vehicle_id
    FROM cars c JOIN vehicles v ON v.id = c.vehicle_id
    WHERE v.active AND v.features @> CAST(:features AS text[])
),
moments AS (
    SELECT e.vehicle_id, CAST(:start AS timestamptz) AS s
    FROM eligible e
    UNION
    SELECT b.vehicle_id, upper(b.blocked)
    FROM eligible e JOIN blocks b ON b.vehicle_id = e.vehicle_id
    WHERE b.state IN ('active', 'completed')
      AND NOT (b.kind = 'hold' AND b.expires_at <= clock_timestamp())
      AND lower(b.blocked) < CAST(:start AS timestamptz) + CAST(:horizon AS interval)
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
