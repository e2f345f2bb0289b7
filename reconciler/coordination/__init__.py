"""State shared by all replicas through the database: pauses and probes, rate limits, OAuth tokens.
Nothing here is held in one process's memory. (Time-of-day slots are the engine's: engine/schedule_slots.)"""
