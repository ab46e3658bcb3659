-- Trace context (W3C traceparent text) for OpenTelemetry, NULL unless the sender had
-- one: runs.trace is the context of the code that started the run, steps.trace the
-- context of the code whose signal, event, message or token completed that wait.
ALTER TABLE runs ADD COLUMN trace TEXT;
ALTER TABLE steps ADD COLUMN trace TEXT;
