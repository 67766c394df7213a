-- extra: an operator can disable an account (`sohbet-server user disable`): it cannot log
-- in and its sessions are ended. Null = active; the time says since when it is disabled.
alter table users add column disabled_at timestamptz;
