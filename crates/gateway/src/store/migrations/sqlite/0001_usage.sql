-- One row per client request. Keys are stored as fingerprints (`sk-...abcd#<hash>`), never
-- as secrets. Times are unix milliseconds (UTC).
CREATE TABLE llmux_requests (
    id                INTEGER PRIMARY KEY,
    at_ms             INTEGER NOT NULL,
    request_id        TEXT    NOT NULL,
    client_key        TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    key_fingerprint   TEXT,
    status            INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    latency_ms        INTEGER NOT NULL,
    ttft_ms           INTEGER,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    tokens_estimated  INTEGER NOT NULL,
    prompt_price      REAL    NOT NULL,
    completion_price  REAL    NOT NULL,
    cost              REAL    NOT NULL,
    client_ip         TEXT
);
CREATE INDEX llmux_requests_at ON llmux_requests (at_ms);
CREATE INDEX llmux_requests_key_at ON llmux_requests (client_key, at_ms);
CREATE INDEX llmux_requests_model_at ON llmux_requests (model, at_ms);

-- One row per upstream attempt: channel and key success rates.
CREATE TABLE llmux_attempts (
    id              INTEGER PRIMARY KEY,
    at_ms           INTEGER NOT NULL,
    request_id      TEXT    NOT NULL,
    client_key      TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    upstream_model  TEXT    NOT NULL,
    key_fingerprint TEXT,
    success         INTEGER NOT NULL,
    status          INTEGER,
    error_class     TEXT,
    latency_ms      INTEGER NOT NULL
);
CREATE INDEX llmux_attempts_at ON llmux_attempts (at_ms);
CREATE INDEX llmux_attempts_provider_at ON llmux_attempts (provider, at_ms);

-- Request rows past the retention period, folded per UTC day: token usage and spending
-- survive the purge.
CREATE TABLE llmux_daily (
    day               INTEGER NOT NULL,
    client_key        TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost              REAL    NOT NULL,
    PRIMARY KEY (day, client_key, model)
);

-- Credits added with /v1/add_credits (on top of the configured `credits`); never purged.
CREATE TABLE llmux_credits (
    id         INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    client_key TEXT    NOT NULL,
    amount     REAL    NOT NULL
);
CREATE INDEX llmux_credits_key ON llmux_credits (client_key);
