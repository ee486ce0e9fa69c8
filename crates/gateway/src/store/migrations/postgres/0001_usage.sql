-- One row per client request. Keys are stored as fingerprints (`sk-...abcd#<hash>`), never
-- as secrets. Times are unix milliseconds (UTC).
CREATE TABLE llmux_requests (
    id                BIGSERIAL PRIMARY KEY,
    at_ms             BIGINT  NOT NULL,
    request_id        TEXT    NOT NULL,
    client_key        TEXT    NOT NULL,
    endpoint          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    provider          TEXT,
    upstream_model    TEXT,
    key_fingerprint   TEXT,
    status            INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    stream            BOOLEAN NOT NULL,
    latency_ms        BIGINT  NOT NULL,
    ttft_ms           BIGINT,
    prompt_tokens     BIGINT  NOT NULL,
    completion_tokens BIGINT  NOT NULL,
    cached_tokens     BIGINT  NOT NULL,
    reasoning_tokens  BIGINT  NOT NULL,
    tokens_estimated  BOOLEAN NOT NULL,
    prompt_price      DOUBLE PRECISION NOT NULL,
    completion_price  DOUBLE PRECISION NOT NULL,
    cost              DOUBLE PRECISION NOT NULL,
    client_ip         TEXT
);
CREATE INDEX llmux_requests_at ON llmux_requests (at_ms);
CREATE INDEX llmux_requests_key_at ON llmux_requests (client_key, at_ms);
CREATE INDEX llmux_requests_model_at ON llmux_requests (model, at_ms);

-- One row per upstream attempt: channel and key success rates.
CREATE TABLE llmux_attempts (
    id              BIGSERIAL PRIMARY KEY,
    at_ms           BIGINT  NOT NULL,
    request_id      TEXT    NOT NULL,
    client_key      TEXT    NOT NULL,
    provider        TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    upstream_model  TEXT    NOT NULL,
    key_fingerprint TEXT,
    success         BOOLEAN NOT NULL,
    status          INTEGER,
    error_class     TEXT,
    latency_ms      BIGINT  NOT NULL
);
CREATE INDEX llmux_attempts_at ON llmux_attempts (at_ms);
CREATE INDEX llmux_attempts_provider_at ON llmux_attempts (provider, at_ms);

-- Request rows past the retention period, folded per UTC day: token usage and spending
-- survive the purge.
CREATE TABLE llmux_daily (
    day               BIGINT  NOT NULL,
    client_key        TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    requests          BIGINT  NOT NULL,
    prompt_tokens     BIGINT  NOT NULL,
    completion_tokens BIGINT  NOT NULL,
    cost              DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, client_key, model)
);

-- Credits added with /v1/add_credits (on top of the configured `credits`); never purged.
CREATE TABLE llmux_credits (
    id         BIGSERIAL PRIMARY KEY,
    at_ms      BIGINT  NOT NULL,
    client_key TEXT    NOT NULL,
    amount     DOUBLE PRECISION NOT NULL
);
CREATE INDEX llmux_credits_key ON llmux_credits (client_key);
