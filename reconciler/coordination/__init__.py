"""State shared by all replicas through the database: pauses and probes, rate limits, OAuth tokens,
time-of-day schedule slots. Nothing here is held in one process's memory."""
