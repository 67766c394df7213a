-- The send path lives in one place, server/src/domain/messages.rs (with the read lock and
-- watermark move of server/src/domain/read_status.rs), where its queries are checked
-- against the schema at build time. This function was a second copy of those steps and of
-- the read lock's key; a plpgsql body is only checked when it runs.
drop function send_message(bigint, bigint, text, text, bigint);
