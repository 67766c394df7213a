with moved as (
         update group_members set last_read_seq = $4
          where group_id = $3 and user_id = $2 and last_read_seq < $4
         returning 1)
     insert into message_read_status (message_id, user_id, group_id, seq)
     select $1, $2, $3, $4 from moved
     on conflict (message_id, user_id) do update set is_read = true
     returning read_at
