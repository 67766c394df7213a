select gm.user_id,
       (select s.read_at from message_read_status s
         where s.group_id = gm.group_id and s.user_id = gm.user_id and s.seq >= $2
         order by s.seq limit 1) as read_at
  from group_members gm
 where gm.group_id = $1 and gm.last_read_seq >= $2 and gm.user_id is distinct from $3
 order by read_at nulls last, gm.user_id
