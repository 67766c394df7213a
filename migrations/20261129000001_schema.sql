-- The seed's data model (shared/seed/er-diagram.md): users, friendships, chat_groups,
-- group_members, messages, message_read_status. Sessions live in Redis, not here.
-- Extra columns beyond the seed are marked "extra:" with the reason.

create function set_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end;
$$;

-- users ---------------------------------------------------------------------------------
create table users (
    user_id       bigint generated always as identity primary key,
    -- Stored lower-case (the check), so the unique index below is case-insensitive.
    username      text not null
        constraint users_username_check check (username ~ '^[a-z0-9_.]{3,32}$'),
    email         text not null
        constraint users_email_check check (char_length(email) <= 254 and email ~ '^[^@\s]+@[^@\s]+$'),
    password_hash text not null,
    -- 8 characters from an alphabet without 0/O/1/I/L, easy to read aloud and type.
    friend_code   text not null
        constraint users_friend_code_check check (friend_code ~ '^[2-9A-HJKMNP-Z]{8}$'),
    display_name  text
        constraint users_display_name_check check (char_length(display_name) between 1 and 64),
    profile_pic   text
        constraint users_profile_pic_check check (char_length(profile_pic) <= 2048 and profile_pic ~ '^https?://'),
    status        text not null default 'online'
        constraint users_status_check check (status in ('online', 'idle', 'dnd', 'invisible')),
    last_seen     timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint users_friend_code_key unique (friend_code)
);
create unique index users_username_key on users (username);
create unique index users_email_key on users (lower(email));
create trigger users_updated_at before update on users
    for each row execute function set_updated_at();

-- friendships ---------------------------------------------------------------------------
-- One row per unordered pair. user_id_1 is the user who acted first (sent the request, or
-- blocked); status 'blocked' means user_id_1 blocked user_id_2.
create table friendships (
    friendship_id bigint generated always as identity primary key,
    user_id_1     bigint not null references users (user_id) on delete cascade,
    user_id_2     bigint not null references users (user_id) on delete cascade,
    status        text not null default 'pending'
        constraint friendships_status_check check (status in ('pending', 'accepted', 'blocked')),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint friendships_distinct_users check (user_id_1 <> user_id_2)
);
create unique index friendships_pair_key
    on friendships (least(user_id_1, user_id_2), greatest(user_id_1, user_id_2));
create index friendships_user_id_2_idx on friendships (user_id_2);
create index friendships_user_id_1_idx on friendships (user_id_1);
create trigger friendships_updated_at before update on friendships
    for each row execute function set_updated_at();

-- chat_groups ---------------------------------------------------------------------------
create table chat_groups (
    group_id        bigint generated always as identity primary key,
    -- A DM has no name of its own: clients show the other member's name.
    name            text
        constraint chat_groups_name_check check (char_length(name) between 1 and 100),
    description     text
        constraint chat_groups_description_check check (char_length(description) <= 1000),
    is_direct_msg   boolean not null default false,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    -- extra: the group's message sequence, advanced in the inserting transaction so that
    -- readers paging "after X" never skip a message that committed late.
    last_seq        bigint not null default 0,
    -- extra: time of the latest message, to sort a user's groups by activity.
    last_message_at timestamptz,
    -- extra: "<smaller user_id>:<larger user_id>" for a DM, so get-or-create is idempotent
    -- under concurrency.
    dm_key          text,
    constraint chat_groups_dm_key_key unique (dm_key),
    constraint chat_groups_dm_shape check ((is_direct_msg and dm_key is not null and name is null)
                                           or (not is_direct_msg and dm_key is null and name is not null))
);
create trigger chat_groups_updated_at before update on chat_groups
    for each row execute function set_updated_at();

-- group_members -------------------------------------------------------------------------
create table group_members (
    group_member_id bigint generated always as identity primary key,
    group_id        bigint not null references chat_groups (group_id) on delete cascade,
    user_id         bigint not null references users (user_id) on delete cascade,
    role            text not null default 'member'
        constraint group_members_role_check check (role in ('owner', 'admin', 'member')),
    joined_at       timestamptz not null default now(),
    -- extra: read watermark: every message of the group with seq <= last_read_seq is read
    -- by this member. Marking read and counting unread use it instead of scanning history.
    last_read_seq   bigint not null default 0,
    constraint group_members_group_user_key unique (group_id, user_id)
);
create index group_members_user_id_idx on group_members (user_id);
-- At most one owner per group.
create unique index group_members_one_owner_key on group_members (group_id) where role = 'owner';

-- messages ------------------------------------------------------------------------------
create table messages (
    message_id bigint generated always as identity primary key,
    group_id   bigint not null references chat_groups (group_id) on delete cascade,
    -- A deleted account's messages stay in the history without an author.
    sender_id  bigint references users (user_id) on delete set null,
    content    text not null
        constraint messages_content_check check (char_length(content) between 1 and 4000
                                                 and content = btrim(content, E' \t\r\n')),
    -- True once every other member has read the message.
    is_read    boolean not null default false,
    sent_at    timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- extra: position in the group, assigned from chat_groups.last_seq in the inserting
    -- transaction; the history's cursor and the gateway's resume point.
    seq        bigint not null,
    -- extra: set when the author edits the content (updated_at also moves when is_read does).
    edited_at  timestamptz,
    -- extra: client-chosen retry key; the same nonce from the same sender is the same message.
    nonce      text
        constraint messages_nonce_check check (char_length(nonce) between 1 and 64),
    constraint messages_group_seq_key unique (group_id, seq),
    constraint messages_sender_nonce_key unique (sender_id, nonce)
);
create index messages_sender_id_idx on messages (sender_id);
create trigger messages_updated_at before update on messages
    for each row execute function set_updated_at();

-- message_read_status -------------------------------------------------------------------
-- A receipt: user_id read up to message_id at read_at. The group_members watermark is the
-- fast path; these rows answer "who read this message, and when".
create table message_read_status (
    status_id  bigint generated always as identity primary key,
    message_id bigint not null references messages (message_id) on delete cascade,
    user_id    bigint not null references users (user_id) on delete cascade,
    is_read    boolean not null default true,
    read_at    timestamptz not null default now(),
    constraint message_read_status_message_user_key unique (message_id, user_id)
);
create index message_read_status_user_id_idx on message_read_status (user_id);
