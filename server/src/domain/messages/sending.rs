//! Sending: the one send path, with group commit.
//!
//! A message's `seq` comes from `chat_groups.last_seq`, incremented in the transaction that
//! stores it. The row lock on the group serializes the group's senders, so sequence order is
//! commit order and a reader paging "after X" never skips a message that committed late.
//! One transaction per message made a busy group only as fast as one transaction's round
//! trips under that lock. So the sends of a group wait in the group's queue on this
//! instance, and one task per busy group commits whatever has gathered in one transaction
//! (group commit): one insert numbering the whole batch, one move of the senders' read
//! watermarks (you have read what you wrote), one commit. Under light load a batch is one
//! message; under heavy load a batch holds what arrived during the previous commit.
//!
//! Kept from one transaction per message:
//! - Order: a batch takes consecutive sequence numbers in arrival order, batches of a group
//!   commit one after another (and across instances, under the row lock), and their events
//!   are published in that order before any of them is answered. Nothing ever takes a
//!   number without storing its message, so sequence numbers have no gaps but deletions.
//! - Idempotency: a nonce already stored, or repeated within the batch, is answered with
//!   the first message; a nonce racing in from another group's batch fails that batch's
//!   insert on `messages_sender_nonce_key`, and the batch is tried again, answering it then.
//! - Nothing lost: a send is answered only after its batch committed. A batch that fails
//!   for a reason other than an unavailable database is tried again one send at a time, so
//!   a send that cannot be stored fails alone.
//!
//! The sender's receipt rows (`message_read_status`) are written after the batch is
//! answered: they only say when, and a lost one leaves that time unknown, never a count
//! wrong (counts come from the watermarks, which move in the batch).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use protocol::{gateway::Event, messages::Message, GroupId, UserId};
use tokio::sync::oneshot;

use super::MessageRow;
use crate::{
    domain::{
        groups::DM_READ_ONLY,
        read_status::{self, SendersRead},
        MessageContent, Nonce,
    },
    error::{violated_constraint, ApiError, ApiResult},
    state::AppState,
};

/// The most sends one transaction takes: bounds the arrays of one statement and how long
/// the group's row lock is held, while a burst still commits in a handful of batches.
const MAX_BATCH: usize = 256;

/// The most sends waiting for one group on this instance. Past it the server is not
/// keeping up (a batch of 256 commits in milliseconds), and a send is refused with 503
/// `unavailable` rather than queued without end; a retry with the same nonce is safe.
const MAX_WAITING: usize = 4096;

/// Tries of one batch that a concurrent change forced to start over (a nonce stored by
/// another group's batch, a sender removed meanwhile). Each try sees what the last one hit,
/// so a second try normally succeeds.
const MAX_TRIES: usize = 3;

/// What a send did.
pub enum Sent {
    /// A new message.
    Created(Message),
    /// A retry of a send already stored (same nonce): the first message, not a duplicate.
    Replayed(Message),
}

/// One send waiting for its batch.
struct Pending {
    sender: UserId,
    content: MessageContent,
    nonce: Option<Nonce>,
    reply: oneshot::Sender<ApiResult<Sent>>,
}

/// The sends waiting per group. A group has an entry exactly while a task commits for it.
#[derive(Clone, Default)]
pub struct SendQueues {
    groups: Arc<Mutex<HashMap<GroupId, Vec<Pending>>>>,
}

/// Sends a message: stored with the group's next seq in its group's next batch, answered
/// after commit, published to every member. With a nonce already used by the sender in
/// this group, answers the first message instead of storing a duplicate (409
/// `nonce_reused` if it was used in another group). In a DM, only friends send (403: the DM
/// is read-only). 404 unless a member.
pub async fn send(
    state: &AppState,
    group_id: GroupId,
    me: UserId,
    content: &MessageContent,
    nonce: Option<Nonce>,
) -> ApiResult<Sent> {
    // Whether the sender may send here is checked in the batch's transaction, for all
    // its senders in one query: a round trip per batch instead of one to three per send.
    let (reply, answer) = oneshot::channel();
    let pending = Pending {
        sender: me,
        content: content.clone(),
        nonce,
        reply,
    };
    {
        let mut groups = state.sends.groups.lock().map_err(|_| poisoned())?;
        match groups.get_mut(&group_id) {
            Some(waiting) if waiting.len() >= MAX_WAITING => return Err(ApiError::Unavailable),
            Some(waiting) => waiting.push(pending),
            None => {
                groups.insert(group_id, vec![pending]);
                // Its own task, so a caller that goes away cannot abandon the others' batch.
                tokio::spawn(commit_group(state.clone(), group_id));
            }
        }
    }
    answer
        .await
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("the send's batch ended unanswered")))?
}

fn poisoned() -> ApiError {
    ApiError::Internal(anyhow::anyhow!("send queue lock poisoned"))
}

/// Removes the group's entry if its task ends without emptying it (a panic): the waiting
/// sends are answered with an error as their replies drop, and the next send starts over.
struct Committer {
    queues: SendQueues,
    group_id: GroupId,
    finished: bool,
}

impl Drop for Committer {
    fn drop(&mut self) {
        if !self.finished {
            if let Ok(mut groups) = self.queues.groups.lock() {
                groups.remove(&self.group_id);
            }
        }
    }
}

/// Commits the group's waiting sends, batch after batch, until none are left.
async fn commit_group(state: AppState, group_id: GroupId) {
    let mut committer = Committer {
        queues: state.sends.clone(),
        group_id,
        finished: false,
    };
    loop {
        let batch: Vec<Pending> = {
            let Ok(mut groups) = state.sends.groups.lock() else {
                return;
            };
            match groups.get_mut(&group_id) {
                Some(waiting) if !waiting.is_empty() => {
                    let n = waiting.len().min(MAX_BATCH);
                    waiting.drain(..n).collect()
                }
                _ => {
                    // Under the lock: a send arriving now finds no entry and starts a task.
                    groups.remove(&group_id);
                    committer.finished = true;
                    return;
                }
            }
        };
        commit_batch(&state, group_id, batch).await;
    }
}

/// Commits one batch and answers it; if it failed for a reason of its own, commits its
/// sends one at a time so that only the send at fault fails.
async fn commit_batch(state: &AppState, group_id: GroupId, batch: Vec<Pending>) {
    let sends: Vec<Outgoing> = batch.iter().map(Outgoing::from).collect();
    match commit_with_tries(state, group_id, &sends).await {
        Ok(done) => finish(state, group_id, batch, done).await,
        Err(e) if batch.len() == 1 || matches!(e, ApiError::Unavailable) => {
            let mut batch = batch.into_iter();
            let first = batch.next();
            for p in batch {
                let _ = p.reply.send(Err(shared(&e)));
            }
            if let Some(p) = first {
                let _ = p.reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, group_id, size = batch.len(), "batch failed; sending one at a time");
            for (p, send) in batch.into_iter().zip(sends) {
                match commit_with_tries(state, group_id, std::slice::from_ref(&send)).await {
                    Ok(done) => finish(state, group_id, vec![p], done).await,
                    Err(e) => {
                        let _ = p.reply.send(Err(e));
                    }
                }
            }
        }
    }
}

/// The same error for another waiter of the batch (the cause was logged once).
fn shared(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unavailable => ApiError::Unavailable,
        ApiError::NotFound(what) => ApiError::NotFound(what),
        ApiError::Forbidden(why) => ApiError::Forbidden(why),
        ApiError::Conflict { code, message } => ApiError::Conflict { code, message },
        other => ApiError::Internal(anyhow::anyhow!("{other}")),
    }
}

/// A send as the transaction needs it.
struct Outgoing {
    sender: UserId,
    content: String,
    nonce: Option<String>,
}

impl From<&Pending> for Outgoing {
    fn from(p: &Pending) -> Self {
        Self {
            sender: p.sender,
            content: p.content.as_str().to_owned(),
            nonce: p.nonce.as_ref().map(|n| n.as_str().to_owned()),
        }
    }
}

/// A committed batch: an answer per send (in order), the new messages in seq order, who
/// receives them, and what the senders' watermarks did.
struct Done {
    answers: Vec<ApiResult<Sent>>,
    created: Vec<Message>,
    read: SendersRead,
}

/// Publishes the batch's messages (in seq order, before anyone is answered, so a client
/// never acts on a message its members have not been sent), answers the senders, and
/// writes their receipts.
async fn finish(state: &AppState, group_id: GroupId, batch: Vec<Pending>, done: Done) {
    let Done {
        answers,
        created,
        read,
    } = done;
    // A receipt for each sender's last message of the batch, as reading it would write.
    let mut last: HashMap<UserId, (i64, i64)> = HashMap::new();
    for m in &created {
        if let Some(sender) = m.sender_id {
            last.insert(sender, (m.seq, m.message_id));
        }
    }
    let receipts: Vec<(UserId, i64, i64)> = last
        .into_iter()
        .map(|(sender, (seq, id))| (sender, seq, id))
        .collect();
    let events = created
        .into_iter()
        .map(|message| Event::MessageCreated { message })
        .collect();
    state.events.publish_all(read.members, events).await;
    read_status::publish_all_read(state, group_id, read.all_read).await;
    for (p, answer) in batch.into_iter().zip(answers) {
        // The sender may have gone; the message stays sent.
        let _ = p.reply.send(answer);
    }
    let db = state.db.clone();
    tokio::spawn(async move {
        if let Err(e) = read_status::record_receipts(&db, group_id, &receipts).await {
            tracing::warn!(error = %e, group_id, "senders' receipts not recorded");
        }
    });
}

/// [`try_commit`] until it did not have to start over.
async fn commit_with_tries(
    state: &AppState,
    group_id: GroupId,
    sends: &[Outgoing],
) -> ApiResult<Done> {
    let mut refused = Vec::new();
    for _ in 1..MAX_TRIES {
        match try_commit(state, group_id, sends, &refused).await {
            Ok(Try::Done(done)) => return Ok(done),
            Ok(Try::Removed(senders)) => refused.extend(senders),
            Err(e) if violated_constraint(&e) == Some("messages_sender_nonce_key") => {}
            Err(e) => return Err(e.into()),
        }
    }
    match try_commit(state, group_id, sends, &refused).await {
        Ok(Try::Done(done)) => Ok(done),
        Ok(Try::Removed(_)) => Err(ApiError::Unavailable),
        Err(e) => Err(e.into()),
    }
}

enum Try {
    Done(Done),
    /// These senders are no longer members: start over without their sends.
    Removed(Vec<UserId>),
}

/// What becomes of each send of the batch.
enum Plan {
    /// Stored as the `n`-th new message of the batch.
    Insert(usize),
    /// Answered with a message already stored (its nonce).
    Replay(Message),
    /// Answered with the message of an earlier send of this batch (same nonce).
    SameAs(usize),
    /// The sender is not a member (any more).
    NotMember,
    /// A DM whose members are not friends: read-only.
    ReadOnly,
}

/// What becomes of each send, given the messages already stored under the batch's nonces
/// and the senders refused: a plan per send, and which sends are stored (in order).
fn plan(
    sends: &[Outgoing],
    stored: &[Message],
    refused: &[UserId],
    read_only: &[UserId],
) -> (Vec<Plan>, Vec<usize>) {
    let mut plans = Vec::with_capacity(sends.len());
    let mut first_of_nonce: HashMap<(UserId, &str), usize> = HashMap::new();
    let mut new = Vec::new();
    for (i, s) in sends.iter().enumerate() {
        let plan = if refused.contains(&s.sender) {
            Plan::NotMember
        } else if read_only.contains(&s.sender) {
            Plan::ReadOnly
        } else if let Some(nonce) = s.nonce.as_deref() {
            if let Some(m) = stored
                .iter()
                .find(|m| m.sender_id == Some(s.sender) && m.nonce.as_deref() == Some(nonce))
            {
                Plan::Replay(m.clone())
            } else if let Some(&first) = first_of_nonce.get(&(s.sender, nonce)) {
                Plan::SameAs(first)
            } else {
                first_of_nonce.insert((s.sender, nonce), i);
                new.push(i);
                Plan::Insert(new.len() - 1)
            }
        } else {
            new.push(i);
            Plan::Insert(new.len() - 1)
        };
        plans.push(plan);
    }
    (plans, new)
}

/// One transaction: the stored messages for nonces already used, the new messages with
/// consecutive seqs, the senders' watermarks.
async fn try_commit(
    state: &AppState,
    group_id: GroupId,
    sends: &[Outgoing],
    refused: &[UserId],
) -> Result<Try, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let (refused, read_only) = check_senders(&mut tx, group_id, sends, refused).await?;
    let (nonce_senders, nonces): (Vec<i64>, Vec<String>) = sends
        .iter()
        .filter_map(|s| Some((s.sender, s.nonce.clone()?)))
        .unzip();
    let stored: Vec<Message> = if nonces.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as!(
            MessageRow,
            "select m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read,
                    m.sent_at, m.updated_at, m.edited_at, m.nonce
               from messages m
               join unnest($1::bigint[], $2::text[]) as n(sender_id, nonce)
                 on m.sender_id = n.sender_id and m.nonce = n.nonce",
            &nonce_senders,
            &nonces
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(Message::from)
        .collect()
    };
    let (plans, new) = plan(sends, &stored, &refused, &read_only);
    let mut created: Vec<Message> = Vec::new();
    let mut read = SendersRead::default();
    if !new.is_empty() {
        let senders: Vec<i64> = new.iter().map(|&i| sends[i].sender).collect();
        let contents: Vec<String> = new.iter().map(|&i| sends[i].content.clone()).collect();
        // Empty for none: a nonce is never empty, and an array of text binds no NULLs here.
        let nonces: Vec<String> = new
            .iter()
            .map(|&i| sends[i].nonce.clone().unwrap_or_default())
            .collect();
        // One statement takes the batch's seqs (locking the group's row until commit) and
        // inserts the messages, numbered in arrival order.
        created = sqlx::query_as!(
            MessageRow,
            r#"with g as (
                   update chat_groups set last_seq = last_seq + $2, last_message_at = now()
                    where group_id = $1 returning last_seq - $2 as base)
               insert into messages as m (group_id, sender_id, content, seq, nonce)
               select $1, b.sender_id, b.content, g.base + b.ord, nullif(b.nonce, '')
                 from g, unnest($3::bigint[], $4::text[], $5::text[])
                         with ordinality as b(sender_id, content, nonce, ord)
               returning m.message_id, m.group_id, m.sender_id, m.content, m.seq, m.is_read,
                         m.sent_at, m.updated_at, m.edited_at, m.nonce"#,
            group_id,
            i64::try_from(new.len()).unwrap_or(i64::MAX),
            &senders,
            &contents,
            &nonces
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(Message::from)
        .collect();
        if created.is_empty() {
            // The group is gone: nothing was stored.
            return Ok(Try::Done(Done {
                answers: sends
                    .iter()
                    .map(|_| Err(ApiError::NotFound("group")))
                    .collect(),
                created,
                read,
            }));
        }
        created.sort_by_key(|m| m.seq);
        // Each sender has read up to their last message of the batch.
        let mut last: HashMap<UserId, i64> = HashMap::new();
        for m in &created {
            if let Some(sender) = m.sender_id {
                last.insert(sender, m.seq);
            }
        }
        read = read_status::advance_senders(&mut tx, group_id, &last).await?;
        let removed: Vec<UserId> = last
            .keys()
            .filter(|sender| !read.moved.contains(sender))
            .copied()
            .collect();
        if !removed.is_empty() {
            // Dropping the transaction keeps nothing of this try.
            return Ok(Try::Removed(removed));
        }
    }
    tx.commit().await?;
    let answers = plans
        .iter()
        .map(|plan| match plan {
            Plan::Insert(n) => new_message(&created, *n).map(Sent::Created),
            Plan::Replay(m) => replay(m.clone(), group_id),
            Plan::SameAs(first) => match plans.get(*first) {
                Some(Plan::Insert(n)) => new_message(&created, *n).map(Sent::Replayed),
                _ => Err(ApiError::NotFound("group")),
            },
            Plan::NotMember => Err(ApiError::NotFound("group")),
            Plan::ReadOnly => Err(ApiError::Forbidden(DM_READ_ONLY)),
        })
        .collect();
    Ok(Try::Done(Done {
        answers,
        created,
        read,
    }))
}

/// Which of the batch's senders may not send: those not members (404, the same answer
/// whether or not the group exists), with `refused` (found removed by an earlier try), and
/// those in a DM whose two members are not friends (403, read-only).
async fn check_senders(
    tx: &mut sqlx::PgConnection,
    group_id: GroupId,
    sends: &[Outgoing],
    refused: &[UserId],
) -> sqlx::Result<(Vec<UserId>, Vec<UserId>)> {
    let mut senders: Vec<UserId> = sends.iter().map(|s| s.sender).collect();
    senders.sort_unstable();
    senders.dedup();
    let allowed = sqlx::query!(
        r#"select m.user_id,
                  not g.is_direct_msg or exists (
                      select 1 from group_members o join friendships f
                        on least(f.user_id_1, f.user_id_2) = least(o.user_id, m.user_id)
                       and greatest(f.user_id_1, f.user_id_2) = greatest(o.user_id, m.user_id)
                     where o.group_id = m.group_id and o.user_id <> m.user_id
                       and f.status = 'accepted') as "may_send!"
             from group_members m join chat_groups g on g.group_id = m.group_id
            where m.group_id = $1 and m.user_id = any($2)"#,
        group_id,
        &senders
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut not_members = refused.to_vec();
    not_members.extend(
        senders
            .iter()
            .filter(|u| !allowed.iter().any(|row| row.user_id == **u)),
    );
    let read_only = allowed
        .iter()
        .filter(|row| !row.may_send)
        .map(|row| row.user_id)
        .collect();
    Ok((not_members, read_only))
}

/// The `n`-th message the batch stored.
fn new_message(created: &[Message], n: usize) -> ApiResult<Message> {
    created.get(n).cloned().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("a batch stored fewer messages than sent"))
    })
}

/// A retry with a nonce already used: the first message, if it was for this group.
fn replay(existing: Message, group_id: GroupId) -> ApiResult<Sent> {
    if existing.group_id != group_id {
        return Err(ApiError::Conflict {
            code: "nonce_reused",
            message: "that nonce was already used for a message in another conversation",
        });
    }
    Ok(Sent::Replayed(existing))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(sender: UserId, nonce: Option<&str>) -> Outgoing {
        Outgoing {
            sender,
            content: "hi".into(),
            nonce: nonce.map(str::to_owned),
        }
    }

    fn kinds(plans: &[Plan]) -> Vec<String> {
        plans
            .iter()
            .map(|p| match p {
                Plan::Insert(n) => format!("insert {n}"),
                Plan::Replay(m) => format!("replay {}", m.message_id),
                Plan::SameAs(i) => format!("same as {i}"),
                Plan::NotMember => "not a member".into(),
                Plan::ReadOnly => "read-only".into(),
            })
            .collect()
    }

    #[test]
    fn a_nonce_repeated_in_a_batch_is_stored_once_and_answered_with_the_first() {
        let sends = [
            send(1, Some("a")),
            send(2, Some("a")),
            send(1, Some("a")),
            send(1, None),
            send(1, None),
        ];
        let (plans, new) = plan(&sends, &[], &[], &[]);
        assert_eq!(
            kinds(&plans),
            ["insert 0", "insert 1", "same as 0", "insert 2", "insert 3"]
        );
        assert_eq!(new, [0, 1, 3, 4]);
    }

    #[test]
    fn a_stored_nonce_replays_and_refused_or_read_only_senders_store_nothing() {
        let stored = Message {
            message_id: 7,
            group_id: 1,
            sender_id: Some(1),
            content: "hi".into(),
            seq: 3,
            is_read: false,
            sent_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            edited_at: None,
            nonce: Some("a".into()),
        };
        let sends = [
            send(1, Some("a")),
            send(2, None),
            send(3, Some("b")),
            send(4, Some("c")),
        ];
        let (plans, new) = plan(&sends, &[stored], &[2], &[4]);
        assert_eq!(
            kinds(&plans),
            ["replay 7", "not a member", "insert 0", "read-only"]
        );
        assert_eq!(new, [2]);
    }
}
