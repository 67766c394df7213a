//! What a connection writes: frames, queued events (coalesced into one flush), and the
//! messages a resuming client missed.

use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes};
use futures::{Sink, SinkExt, Stream};
use protocol::gateway::{ResumeFrom, ServerFrame};
use tokio::{sync::mpsc, time::timeout};

use super::{Conn, End, MAX_FRAMES_PER_FLUSH, SEND_TIMEOUT};
use crate::gateway::{hub::Outbound, replay};

impl<S, E> Conn<'_, S>
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        match timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Queues a frame in the socket's write buffer without flushing it (the buffer is
    /// written out when it fills, or by [`Self::flush`]).
    async fn feed_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        match timeout(SEND_TIMEOUT, self.socket.feed(Message::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    async fn flush(&mut self) -> Result<(), End> {
        match timeout(SEND_TIMEOUT, self.socket.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Gone),
        }
    }

    /// Delivers `first` and whatever else is already queued (up to a bound), then flushes
    /// once: one write for a burst instead of one per frame.
    pub(super) async fn deliver_queued(
        &mut self,
        first: &Outbound,
        queue: &mut mpsc::Receiver<Arc<Outbound>>,
    ) -> Result<(), End> {
        self.deliver(first).await?;
        for _ in 1..MAX_FRAMES_PER_FLUSH {
            // Empty or closed: flush what was written; a closed queue is seen by the next recv.
            let Ok(next) = queue.try_recv() else { break };
            self.deliver(&next).await?;
        }
        self.flush().await
    }

    pub(super) async fn send(&mut self, frame: &ServerFrame) -> Result<(), End> {
        let text = serde_json::to_string(frame).map_err(|_| End::Close(1011, "internal error"))?;
        self.send_text(text.into()).await
    }

    /// Writes a queued event to the socket's buffer (the caller flushes); message events go
    /// out exactly once and in sequence per group, filling any gap from the database (a
    /// message whose publish lagged behind a later one has already committed: its sender's
    /// transaction held the group row first).
    async fn deliver(&mut self, outbound: &Outbound) -> Result<(), End> {
        if let Some((group_id, seq)) = outbound.position {
            match self.positions.get(&group_id).copied() {
                Some(last) if seq <= last => return Ok(()),
                Some(last) if seq > last + 1 => {
                    let missing = replay::messages_between(&self.state.db, group_id, last, seq)
                        .await
                        .map_err(End::store_failed)?;
                    for (missing_seq, frame) in missing {
                        self.feed_text(frame.into()).await?;
                        self.positions.insert(group_id, missing_seq);
                    }
                }
                _ => {}
            }
            self.positions.insert(group_id, seq);
        }
        self.feed_text(Utf8Bytes::from(outbound.frame.as_ref()))
            .await
    }

    pub(super) async fn replay(&mut self, resume: Option<ResumeFrom>) -> Result<(), End> {
        let mut replayed = 0;
        let mut resync_groups = Vec::new();
        let limit = self.state.settings.replay_limit;
        for cursor in resume.map(|r| r.groups).unwrap_or_default() {
            let (group_id, from) = (cursor.group_id, cursor.last_seq);
            // Only groups the user is in; others are skipped without a word.
            let Some(&current) = self.positions.get(&group_id) else {
                continue;
            };
            if from >= current {
                continue;
            }
            let messages = replay::messages_after(&self.state.db, group_id, from.max(0), limit + 1)
                .await
                .map_err(End::store_failed)?;
            if messages.len() as i64 > limit {
                resync_groups.push(group_id);
                continue;
            }
            // Live events queued meanwhile are filtered by position; send from `from`.
            self.positions.insert(group_id, from);
            for (seq, frame) in messages {
                self.send_text(frame.into()).await?;
                self.positions.insert(group_id, seq);
                replayed += 1;
            }
            let last = self.positions.get(&group_id).copied().unwrap_or(from);
            self.positions.insert(group_id, last.max(current));
        }
        resync_groups.sort_unstable();
        self.send(&ServerFrame::Resumed {
            replayed,
            resync_groups,
        })
        .await
    }
}
