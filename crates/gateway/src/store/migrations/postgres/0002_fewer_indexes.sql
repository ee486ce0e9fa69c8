-- Every index costs each insert; these two served no query better than the ones kept:
-- `token_usage` filters by model only together with a time range or a key
-- (llmux_requests_at, llmux_requests_key_at), and key rankings read a time window of
-- attempts (llmux_attempts_at) and filter the provider in it.
DROP INDEX IF EXISTS llmux_requests_model_at;
DROP INDEX IF EXISTS llmux_attempts_provider_at;
