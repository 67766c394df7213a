-- Friends, groups, messages and read status (issue 3): the columns and indexes the REST API
-- needs beyond the first schema. Every query the messaging routes make is served by an index.

-- friendships ---------------------------------------------------------------------------
-- extra: user_id_2 has blocked user_id_1 as well (a mutual block). Only meaningful with
-- status 'blocked'; when user_id_1 unblocks, the row flips to user_id_2's block.
alter table friendships add column user_2_blocked boolean not null default false;
-- extra: when the blocked user (user_id_2) sent a friend request to the blocker. The blocker
-- never sees it; the sender sees it as an ordinary pending outgoing request, so the answer
-- does not reveal the block.
alter table friendships add column blocked_request_at timestamptz;
alter table friendships add constraint friendships_block_flags_check
    check (status = 'blocked' or (not user_2_blocked and blocked_request_at is null));

-- message_read_status -------------------------------------------------------------------
-- extra: the group and the sequence number of the message, copied from messages, so
-- "when did this member first read at or past seq N" (a per-message receipt) is one index
-- lookup instead of a join over the group's history.
alter table message_read_status add column group_id bigint;
alter table message_read_status add column seq bigint;
update message_read_status s
   set group_id = m.group_id, seq = m.seq
  from messages m
 where m.message_id = s.message_id;
alter table message_read_status alter column group_id set not null;
alter table message_read_status alter column seq set not null;
alter table message_read_status add constraint message_read_status_group_id_fkey
    foreign key (group_id) references chat_groups (group_id) on delete cascade;
create index message_read_status_group_user_seq_idx
    on message_read_status (group_id, user_id, seq);
