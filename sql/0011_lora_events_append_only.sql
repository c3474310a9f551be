-- lora_events is history, as audit_log and scaling_events are: a row once
-- written is never changed or removed (the broker only ever inserts).
CREATE FUNCTION lora_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lora_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER lora_events_append_only
    BEFORE UPDATE OR DELETE ON lora_events
    FOR EACH ROW EXECUTE FUNCTION lora_events_refuse_change();
CREATE TRIGGER lora_events_no_truncate
    BEFORE TRUNCATE ON lora_events
    FOR EACH STATEMENT EXECUTE FUNCTION lora_events_refuse_change();
