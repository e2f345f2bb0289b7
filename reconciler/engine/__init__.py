"""The outbox engine: claiming under leases, fenced finalise, the daemon loop and its jobs, the database.

It knows outbox tables and jobs, never a provider: providers plug in through reconciler.app."""
