"""Analytics: DuckDB kept in step with the store, rollups, costs, read queries and CSV exports."""
