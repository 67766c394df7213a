select coalesce(min(last_read_seq), 0) as "lowest!",
       min(last_read_seq) filter (where user_id <> $2) as lowest_of_others,
       coalesce(array_agg(user_id), '{}') as "members!"
  from group_members where group_id = $1
