-- The messages not yet read by every other member, per group in sequence order. Flipping
-- is_read finds them here without walking the flipped history, so a first read of a long
-- history can flip it in bounded batches, and a batch lost to a crash is picked up by the
-- next flip in the group.
create index messages_not_read_by_all_idx on messages (group_id, seq) where not is_read;
