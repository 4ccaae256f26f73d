"""The demo: simulated practice data and the database it builds aside."""
