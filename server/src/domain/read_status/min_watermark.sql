select coalesce(min(last_read_seq), 0) as "lowest!" from group_members where group_id = $1
