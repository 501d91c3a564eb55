"""Prefect flows that feed contracts, maintenance, returns and transfers into the engine.

Filled in by the pipeline issue; flows stay thin and call the engine in `db/`.
"""
