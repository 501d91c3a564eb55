-- Per vehicle and local calendar day: minutes free, whether the whole day is free, and the
-- first block that takes time from it. Day bounds are computed in the zone of the lot the
-- vehicle is on, so DST days have 23 or 25 hours.
WITH days AS (
    SELECT CAST(:first_day AS date) + g AS day
    FROM generate_series(0, CAST(:days AS integer) - 1) AS g
),
veh AS (
    SELECT v.id, coalesce(s.location_id, v.home_location_id) AS location_id, l.time_zone,
           s.current_status
    FROM vehicles v
    JOIN vehicle_status_realtime s ON s.vehicle_id = v.id
    JOIN locations l ON l.id = coalesce(s.location_id, v.home_location_id)
    WHERE v.active
      AND (CAST(:vehicle_ids AS bigint[]) IS NULL OR v.id = ANY(CAST(:vehicle_ids AS bigint[])))
),
grid AS (
    SELECT veh.id AS vehicle_id, veh.location_id, veh.current_status, d.day,
           tstzrange(d.day::timestamp AT TIME ZONE veh.time_zone,
                     (d.day + 1)::timestamp AT TIME ZONE veh.time_zone) AS span
    FROM veh CROSS JOIN days d
),
busy AS (
    SELECT g.vehicle_id, g.day,
           sum(upper(g.span * b.blocked) - lower(g.span * b.blocked)) AS taken,
           (array_agg(b.kind ORDER BY lower(b.blocked)))[1] AS reason,
           (array_agg(b.id ORDER BY lower(b.blocked)))[1] AS reference_id
    FROM grid g
    JOIN blocks b ON b.vehicle_id = g.vehicle_id
                 AND b.state IN ('active', 'completed')
                 AND NOT (b.kind = 'hold' AND b.expires_at <= now())
                 AND b.blocked && g.span
    GROUP BY g.vehicle_id, g.day
)
INSERT INTO availability_cache AS ac (vehicle_id, day, location_id, free_minutes, is_available,
                                      blocking_reason, blocking_reference_id, cached_at)
SELECT g.vehicle_id, g.day, g.location_id,
       CASE WHEN g.current_status = 'out_of_service' THEN 0
            ELSE greatest(0, floor(extract(epoch FROM (upper(g.span) - lower(g.span))
                                   - coalesce(busy.taken, interval '0')) / 60))::integer
       END,
       busy.taken IS NULL AND g.current_status <> 'out_of_service',
       CASE WHEN g.current_status = 'out_of_service' THEN 'out_of_service' ELSE busy.reason END,
       busy.reference_id,
       now()
FROM grid g
LEFT JOIN busy ON busy.vehicle_id = g.vehicle_id AND busy.day = g.day
ON CONFLICT (vehicle_id, day) DO UPDATE
SET location_id = EXCLUDED.location_id,
    free_minutes = EXCLUDED.free_minutes,
    is_available = EXCLUDED.is_available,
    blocking_reason = EXCLUDED.blocking_reason,
    blocking_reference_id = EXCLUDED.blocking_reference_id,
    cached_at = EXCLUDED.cached_at
