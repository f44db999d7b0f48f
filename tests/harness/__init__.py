"""Shared test harness: free ports and the real PostgreSQL/PgBouncer/Redis stack (stdlib only)."""
