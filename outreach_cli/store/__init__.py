"""Storage: tables, database setup, queries, re-evaluation, the event log, the ledger, bulk actions."""
