-- A request answered by its first and only attempt keeps that attempt in its own row
-- (`attempt_latency_ms` set): one insert per request in the common case instead of two.
-- `llmux_attempts` keeps failed attempts and every attempt of a request that failed over;
-- `llmux_all_attempts` gives both back as one row per upstream attempt.
ALTER TABLE llmux_requests ADD COLUMN attempt_status INTEGER;
ALTER TABLE llmux_requests ADD COLUMN attempt_latency_ms BIGINT;

CREATE VIEW llmux_all_attempts AS
    SELECT at_ms, request_id, client_key, provider, model, upstream_model, key_fingerprint,
           success, status, error_class, latency_ms
    FROM llmux_attempts
    UNION ALL
    SELECT at_ms, request_id, client_key, provider, model, upstream_model, key_fingerprint,
           TRUE AS success, attempt_status AS status, CAST(NULL AS TEXT) AS error_class,
           attempt_latency_ms AS latency_ms
    FROM llmux_requests
    WHERE attempt_latency_ms IS NOT NULL;
