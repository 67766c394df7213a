-- DM calls nobody answered, so the callee can see them after the ringing stopped (also
-- when no device of theirs was online). Ringing itself lives in Redis; only its outcome
-- "missed" is worth keeping.
create table missed_calls (
    missed_call_id bigint generated always as identity primary key,
    group_id       bigint not null references chat_groups (group_id) on delete cascade,
    caller_id      bigint not null references users (user_id) on delete cascade,
    callee_id      bigint not null references users (user_id) on delete cascade,
    called_at      timestamptz not null
);
create index missed_calls_callee_idx on missed_calls (callee_id, called_at desc);
