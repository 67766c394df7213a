-- Unread counts in O(1): a member's unread count is the number of messages after their
-- watermark, i.e. (chat_groups.last_seq - last_read_seq) minus the messages deleted in that
-- range. Sequence numbers are never reused, so a deleted message leaves a gap; this table
-- records the gaps, making the count independent of how many messages are unread.
create table message_deletions (
    group_id bigint not null references chat_groups (group_id) on delete cascade,
    seq      bigint not null,
    constraint message_deletions_pkey primary key (group_id, seq)
);
