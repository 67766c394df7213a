//! One batch's transaction: which sends are stored, replayed or refused, the insert that
//! numbers the new messages, and the senders' watermarks — tried again when a concurrent
//! change forced it to start over.

use std::collections::HashMap;

use protocol::{messages::Message, GroupId, UserId};

use super::{Pending, Sent};
use crate::{
    domain::{
        groups::DM_READ_ONLY,
        messages::MessageRow,
        read_status::{self, SendersRead},
    },
    error::{violated_constraint, ApiError, ApiResult},
    state::AppState,
};

/// Tries of one batch that a concurrent change forced to start over (a nonce stored by
/// another group's batch, a sender removed meanwhile). Each try sees what the last one hit,
/// so a second try normally succeeds.
const MAX_TRIES: usize = 3;

/// A send as the transaction needs it.
pub(super) struct Outgoing {
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
pub(super) struct Done {
    pub(super) answers: Vec<ApiResult<Sent>>,
    pub(super) created: Vec<Message>,
    pub(super) read: SendersRead,
}

/// [`try_commit`] until it did not have to start over.
pub(super) async fn commit_with_tries(
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
