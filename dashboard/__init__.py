"""The Panel operations dashboard (live fleet board, map, search, audit).

Filled in by the dashboard issue; pages stay thin and call the engine in `db/`.
"""
