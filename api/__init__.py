"""The HTTP layer: REST API, live event streams, authentication and the dashboard pages."""
