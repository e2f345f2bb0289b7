-- reconciler schema, version 5: the audit of what people did by hand.
-- Applied by `reconciler db migrate`, or by hand; the last statement records the version.

-- One row per action that is not an outbox row's transition (those are in status_history): who did it
-- (cli:<login>), what (resume), on which key (a provider, e.g. 'mtn'), and what it changed.
CREATE TABLE operator_actions (
    id          INTEGER NOT NULL PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT,
    created_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO schema_migrations (version, name) VALUES (5, 'operator_actions');
