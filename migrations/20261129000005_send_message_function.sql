-- One round trip for a send: the group's next seq (locking its row until commit), the
-- message, the sender's read watermark and receipt, and the first batch of is_read flips,
-- all inside the caller's transaction. The same steps as the separate statements it
-- replaces (see server/src/routes/messages.rs): the read lock is the advisory lock those
-- use, and each statement here takes a fresh snapshot, so reads after the lock see what the
-- previous holder committed.
create function send_message(p_group bigint, p_sender bigint, p_content text, p_nonce text,
                             p_flip_batch bigint)
returns table (message_id bigint, seq bigint, sent_at timestamptz, updated_at timestamptz,
               read_at timestamptz, old_min bigint, new_min bigint, unfinished boolean,
               members bigint[])
language plpgsql as $$
declare
    v_others_min bigint;
    v_flipped bigint := 0;
begin
    update chat_groups g set last_seq = g.last_seq + 1, last_message_at = now()
     where g.group_id = p_group
    returning g.last_seq into seq;
    if seq is null then
        return;
    end if;
    insert into messages as m (group_id, sender_id, content, seq, nonce)
    values (p_group, p_sender, p_content, seq, p_nonce)
    returning m.message_id, m.sent_at, m.updated_at into message_id, sent_at, updated_at;

    -- The read lock of messages.rs (namespace 0x5EAD = 24237).
    perform pg_advisory_xact_lock(24237, (p_group % 2147483647)::int);
    select coalesce(min(gm.last_read_seq), 0),
           min(gm.last_read_seq) filter (where gm.user_id <> p_sender),
           array_agg(gm.user_id)
      into old_min, v_others_min, members
      from group_members gm where gm.group_id = p_group;

    update group_members gm set last_read_seq = seq
     where gm.group_id = p_group and gm.user_id = p_sender and gm.last_read_seq < seq;
    if not found then
        -- The sender left the group meanwhile: nothing of this send may stay.
        raise exception 'sender is not a member' using errcode = 'P0002';
    end if;
    insert into message_read_status as r (message_id, user_id, group_id, seq)
    values (message_id, p_sender, p_group, seq)
    on conflict on constraint message_read_status_message_user_key do update set is_read = true
    returning r.read_at into read_at;

    new_min := coalesce(least(v_others_min, seq), seq);
    unfinished := false;
    if new_min > old_min then
        update messages set is_read = true
         where messages.message_id = any(array(
               select x.message_id from messages x
                where x.group_id = p_group and x.seq <= new_min and not x.is_read
                order by x.seq limit p_flip_batch));
        get diagnostics v_flipped = row_count;
        unfinished := v_flipped >= p_flip_batch;
    end if;
    return next;
end;
$$;
