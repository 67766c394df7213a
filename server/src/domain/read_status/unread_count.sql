select g.last_seq - $2
        - (select count(*) from message_deletions d where d.group_id = $1 and d.seq > $2)
       as "unread_count!"
  from chat_groups g where g.group_id = $1
