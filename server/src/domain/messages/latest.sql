select m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read, m.sent_at,
       m.updated_at, m.edited_at, m.nonce
  from messages m where m.group_id = $1 order by m.seq desc limit $2
