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
//!
//! The queue and the answers are here; one batch's transaction is in [`batch`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use protocol::{gateway::Event, messages::Message, GroupId, UserId};
use tokio::sync::oneshot;

use crate::{
    domain::{read_status, MessageContent, Nonce},
    error::{ApiError, ApiResult},
    state::AppState,
};
use batch::{commit_with_tries, Done, Outgoing};

mod batch;

/// The most sends one transaction takes: bounds the arrays of one statement and how long
/// the group's row lock is held, while a burst still commits in a handful of batches.
const MAX_BATCH: usize = 256;

/// The most sends waiting for one group on this instance. Past it the server is not
/// keeping up (a batch of 256 commits in milliseconds), and a send is refused with 503
/// `unavailable` rather than queued without end; a retry with the same nonce is safe.
const MAX_WAITING: usize = 4096;
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
