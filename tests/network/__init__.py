"""Network-cut harness: PostgreSQL, two servers and clients on hosts of their own (ip netns)."""
