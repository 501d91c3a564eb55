-- Open rentals past their expected return, with the customer's contact details, the
-- category's rates for the fee, and the next booking the late car now threatens.
WITH p AS (SELECT coalesce(CAST(:now AS timestamptz), now()) AS now)
SELECT b.id AS block_id, b.vehicle_id, v.plate, v.make, v.model, c.code AS category_code,
       b.customer_id, cu.name AS customer_name, cu.phone AS customer_phone,
       cu.email AS customer_email, l.id AS location_id, l.code AS location_code, l.time_zone,
       upper(b.period) AS expected_return, p.now - upper(b.period) AS overdue_by,
       c.hourly_rate, c.daily_rate, c.grace_period AS grace,
       nxt.id AS next_block_id, nxt.starts AS next_block_start
FROM blocks b
CROSS JOIN p
JOIN vehicles v ON v.id = b.vehicle_id
JOIN vehicle_categories c ON c.id = v.category_id
JOIN customers cu ON cu.id = b.customer_id
JOIN locations l ON l.id = b.end_location_id
LEFT JOIN LATERAL (
    SELECT n.id, lower(n.period) AS starts
    FROM blocks n
    WHERE n.vehicle_id = b.vehicle_id AND n.id <> b.id AND n.state = 'active'
      AND lower(n.period) >= lower(b.period)
      AND NOT (n.kind = 'hold' AND n.expires_at <= p.now)
    ORDER BY lower(n.period)
    LIMIT 1
) nxt ON true
WHERE b.kind = 'rental' AND b.state = 'active'
  AND upper(b.period) < p.now
  AND (CAST(:loc AS bigint) IS NULL OR b.end_location_id = :loc)
ORDER BY upper(b.period)
