-- 0006_cached_tokens: how many of a result's prompt tokens came from the
-- KV cache.
--
-- A worker group reuses the rows of a prompt prefix that a slot already
-- holds (its last sequence's, or pages another sequence stored) instead of
-- computing them again; RESULT says how many prompt tokens that covered
-- ("cached_tokens", docs/protocol.md). Results keep the count, and the
-- output file shows it as OpenAI's usage.prompt_tokens_details.
-- cached_tokens. NULL: the worker did not say (older groups, and tasks
-- that did not succeed).
ALTER TABLE task_results ADD COLUMN cached_tokens integer
    CHECK (cached_tokens >= 0 AND cached_tokens <= prompt_tokens);
