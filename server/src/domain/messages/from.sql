select m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read, m.sent_at,
       m.updated_at, m.edited_at, m.nonce
  from messages m where m.group_id = $1 and m.seq >= $2 order by m.seq limit $3
