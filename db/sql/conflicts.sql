-- Bookings (reservations and live holds) starting before now + horizon that their vehicle
-- cannot honour: the car is late back from a rental, maintenance or transfer, is out of
-- service, or will be at another lot at pickup time.
WITH p AS (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now),
upcoming AS (
    SELECT n.id AS block_id, n.vehicle_id, n.kind AS block_kind, lower(n.period) AS starts,
           upper(n.period) AS ends, n.start_location_id, n.end_location_id, n.customer_id
    FROM blocks n, p
    WHERE n.state = 'active'
      AND n.kind IN ('reservation', 'hold')
      AND NOT (n.kind = 'hold' AND n.expires_at <= p.now)
      AND lower(n.period) < p.now + CAST(:horizon AS interval)
      AND upper(n.period) > p.now
      AND (CAST(:loc AS bigint) IS NULL OR n.start_location_id = :loc)
),
placed AS (
    SELECT u.*, s.current_status, s.expected_available_at, s.block_id AS cause_block_id,
           CASE WHEN prev.ends > p.now THEN prev.end_location_id ELSE s.location_id END
               AS location_at_start,
           prev.id AS prev_block_id, prev.kind AS prev_kind
    FROM upcoming u
    CROSS JOIN p
    JOIN vehicle_status_realtime s ON s.vehicle_id = u.vehicle_id
    LEFT JOIN LATERAL (
        SELECT b.id, b.kind, upper(b.period) AS ends, b.end_location_id
        FROM blocks b
        WHERE b.vehicle_id = u.vehicle_id AND b.id <> u.block_id
          AND b.state IN ('active', 'completed')
          AND NOT (b.kind = 'hold' AND b.expires_at <= p.now)
          AND upper(b.period) <= u.starts
        ORDER BY upper(b.period) DESC
        LIMIT 1
    ) prev ON true
)
SELECT pl.block_id, pl.vehicle_id, v.plate, v.category_id, pl.block_kind, pl.starts, pl.ends,
       pl.start_location_id, pl.end_location_id, l.code AS location_code, l.time_zone,
       pl.customer_id, cu.name AS customer_name, cu.phone AS customer_phone,
       pl.current_status, pl.expected_available_at, pl.cause_block_id,
       pl.prev_block_id, pl.prev_kind,
       pl.location_at_start, la.code AS location_at_start_code,
       CASE
           WHEN pl.current_status = 'out_of_service' THEN 'out_of_service'
           WHEN pl.current_status = 'rented'
                AND coalesce(pl.expected_available_at, '-infinity') < p.now THEN 'overdue_return'
           WHEN pl.current_status = 'maintenance'
                AND coalesce(pl.expected_available_at, '-infinity') < p.now
               THEN 'maintenance_overrun'
           WHEN pl.current_status = 'in_transit'
                AND coalesce(pl.expected_available_at, '-infinity') < p.now THEN 'late_transfer'
           WHEN pl.current_status IN ('rented', 'maintenance', 'in_transit', 'cleaning')
                AND pl.expected_available_at > pl.starts THEN 'not_back_in_time'
           ELSE 'wrong_location'
       END AS kind
FROM placed pl
CROSS JOIN p
JOIN vehicles v ON v.id = pl.vehicle_id
JOIN locations l ON l.id = pl.start_location_id
LEFT JOIN locations la ON la.id = pl.location_at_start
LEFT JOIN customers cu ON cu.id = pl.customer_id
WHERE pl.current_status = 'out_of_service'
   OR (pl.current_status IN ('rented', 'maintenance', 'in_transit')
       AND coalesce(pl.expected_available_at, '-infinity') < p.now)
   OR (pl.current_status IN ('rented', 'maintenance', 'in_transit', 'cleaning')
       AND pl.expected_available_at > pl.starts)
   OR pl.location_at_start IS DISTINCT FROM pl.start_location_id
ORDER BY pl.starts, pl.block_id
