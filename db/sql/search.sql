-- Vehicles free for [start, end + their category's prep buffer) that will be at the pickup
-- location at start, longest idle first.
--
-- Where a car is at a time: where its last move (one-way booking, transfer) ending by then
-- ends, else where it is now. Moves are tracked by triggers (move_ends, moved_on_at), so
-- the candidates below are exactly the cars that will be on the lot.
--
-- Why one probe per candidate is enough: live blocks of a vehicle never overlap (the
-- blocks_no_overlap constraint), so they are totally ordered. The last block that begins
-- before the wanted window ends is the only one that can reach into it; if it does not,
-- it is also the block the car comes out of. blocks_vehicle_timeline answers that with one
-- backward index-only probe.
--
-- The order of work keeps the hot path narrow: candidates and their live status come from
-- one index on the status table, the probe filters them, and only the free ones are looked
-- up in vehicles (features, plate, odometer).
WITH p AS (
    SELECT coalesce(CAST(:now AS timestamptz), now()) AS now
),
here AS (
    -- cars on this lot now, with their live status straight from the index
    SELECT s.vehicle_id, s.category_id, s.current_status, s.expected_available_at,
           s.location_id
    FROM vehicle_status_realtime s
    CROSS JOIN p
    WHERE s.location_id = :location_id
      AND s.category_id = ANY (CAST(:category_ids AS bigint[]))
      -- not if a move takes it elsewhere before pickup (if one brings it back, it arrives)
      AND NOT EXISTS (SELECT 1 FROM unnest(s.move_ends) AS e(at)
                      WHERE e.at > p.now AND e.at <= :start)
),
arriving AS (
    -- cars whose last move before pickup (one-way rental, transfer) brings them here
    SELECT DISTINCT b.vehicle_id, b.category_id, s.current_status, s.expected_available_at
    FROM blocks b
    JOIN vehicle_status_realtime s ON s.vehicle_id = b.vehicle_id
    WHERE b.end_location_id = :location_id
      AND b.moves
      AND b.state IN ('active', 'completed')
      AND b.category_id = ANY (CAST(:category_ids AS bigint[]))
      -- the clock inline, not from p, so the planner can see how few rows this is
      AND upper(b.period) > coalesce(CAST(:now AS timestamptz), now())
      AND upper(b.period) <= :start
      -- and only if it is still here at pickup, not moved on again
      AND (b.moved_on_at IS NULL OR b.moved_on_at > :start)
      AND b.vehicle_id NOT IN (SELECT vehicle_id FROM here)
),
candidates AS (
    SELECT vehicle_id, category_id, current_status, expected_available_at FROM here
    UNION ALL
    SELECT vehicle_id, category_id, current_status, expected_available_at FROM arriving
),
-- Materialized, so the probe runs first and vehicles are read only for the free cars.
probed AS MATERIALIZED (
    SELECT cand.vehicle_id, cand.current_status, last.busy_until, c.prep_buffer,
           CASE WHEN last.ends > p.now AND last.start_location_id <> :location_id
                THEN last.start_location_id END AS arrives_from
    FROM candidates cand
    JOIN vehicle_categories c ON c.id = cand.category_id
    CROSS JOIN p
    LEFT JOIN LATERAL (
        SELECT upper(b.blocked) AS busy_until, upper(b.period) AS ends,
               b.end_location_id, b.start_location_id
        FROM blocks b
        WHERE b.vehicle_id = cand.vehicle_id
          AND b.state IN ('active', 'completed')
          AND lower(b.blocked) < CAST(:end AS timestamptz) + c.prep_buffer
          AND NOT (b.kind = 'hold' AND b.expires_at <= p.now)
        ORDER BY lower(b.blocked) DESC
        LIMIT 1
    ) last ON true
    WHERE (last.busy_until IS NULL OR last.busy_until <= :start)
      AND cand.current_status <> 'out_of_service'
      -- a car whose promised end passed (overdue rental, overrunning maintenance, late
      -- transfer) is not offered: nobody knows when it will be back
      AND NOT (cand.current_status IN ('rented', 'maintenance', 'in_transit')
               AND coalesce(cand.expected_available_at, '-infinity') < p.now)
      -- nor before the time its live status promises it, block or no block
      AND (cand.expected_available_at IS NULL
           OR cand.current_status NOT IN ('rented', 'maintenance', 'in_transit', 'cleaning')
           OR cand.expected_available_at <= :start)
),
free AS (
    SELECT v.id AS vehicle_id, v.plate, v.make, v.model, v.year, v.colour,
           c.code AS category_code, c.upgrade_rank, v.features, v.odometer_km,
           pr.current_status AS status, pr.busy_until AS free_since, pr.arrives_from,
           pr.prep_buffer
    FROM probed pr
    JOIN vehicles v ON v.id = pr.vehicle_id
    JOIN vehicle_categories c ON c.id = v.category_id
    WHERE v.active
      AND v.features @> CAST(:features AS text[])
    ORDER BY pr.busy_until NULLS FIRST, v.odometer_km, v.plate
    LIMIT :limit
)
SELECT f.vehicle_id, f.plate, f.make, f.model, f.year, f.colour, f.category_code,
       f.upgrade_rank, f.features, f.odometer_km, f.status, f.free_since, f.arrives_from,
       nxt.starts AS free_until
FROM free f
LEFT JOIN LATERAL (
    SELECT lower(b.blocked) AS starts
    FROM blocks b, p
    WHERE b.vehicle_id = f.vehicle_id
      AND b.state IN ('active', 'completed')
      AND lower(b.blocked) >= CAST(:end AS timestamptz) + f.prep_buffer
      AND NOT (b.kind = 'hold' AND b.expires_at <= p.now)
    ORDER BY lower(b.blocked)
    LIMIT 1
) nxt ON true
ORDER BY f.free_since NULLS FIRST, f.odometer_km, f.plate
