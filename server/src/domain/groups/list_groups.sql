select g.group_id, g.name, g.description, g.is_direct_msg, g.created_at, g.updated_at,
       g.last_seq, g.last_message_at, gm.role as my_role, gm.last_read_seq,
       g.last_seq - gm.last_read_seq
         - (select count(*) from message_deletions d
             where d.group_id = g.group_id and d.seq > gm.last_read_seq) as "unread_count!",
       (select to_jsonb(x)::text from (
           select m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read,
                  m.sent_at, m.updated_at, m.edited_at, m.nonce
             from messages m where m.group_id = g.group_id
            order by m.seq desc limit 1) x) as last_message,
       case when g.is_direct_msg then (select to_jsonb(x)::text from (
           select u.user_id, u.username, u.display_name, u.profile_pic, u.status, u.last_seen
             from group_members o join users u on u.user_id = o.user_id
            where o.group_id = g.group_id and o.user_id <> $1 limit 1) x) end as dm_user
  from group_members gm join chat_groups g on g.group_id = gm.group_id
 where gm.user_id = $1
 order by coalesce(g.last_message_at, g.created_at) desc, g.group_id desc
