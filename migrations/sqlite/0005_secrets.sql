-- The signing secret shared by every instance on one database (sqlite; keep in step with
-- migrations/postgres/0005_secrets.sql). Used with PostgreSQL, where several daemons must verify each
-- other's Message-IDs; a single SQLite daemon keeps its secret in a file instead.
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
