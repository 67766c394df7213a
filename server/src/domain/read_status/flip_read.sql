update messages set is_read = true
 where message_id = any(array(select message_id from messages
                               where group_id = $1 and seq <= $2 and not is_read
                               order by seq limit $3))
