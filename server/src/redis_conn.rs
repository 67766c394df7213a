//! The connection to Redis: one Redis server, or a Redis Cluster, chosen by `redis_url`.
//!
//! - `redis://[user:password@]host:port[/db]` is one Redis (or a proxy in front of one):
//!   a [`ConnectionManager`] that reconnects in the background.
//! - `redis+cluster://[user:password@]host:port[,host:port…]` names seed nodes of a Redis
//!   Cluster (one is enough; the rest are found from it): the `redis` crate's async
//!   [`ClusterConnection`], which routes each command to the node owning its key's hash slot
//!   and follows slot moves, failovers and reconnects by itself.
//!
//! [`RedisConn`] is either, and is what every store uses (it implements
//! [`ConnectionLike`]). On a cluster, every command, pipeline and script must touch keys of
//! one hash slot: keys used together share a hash tag (see `keys`), and commands over keys
//! of different slots go through [`RedisConn::query_each`]. Events travel over sharded
//! pub/sub on a cluster (`SPUBLISH`/`SSUBSCRIBE`, Redis ≥ 7: only the shard owning the
//! channel carries them, not every node) and over classic pub/sub on one Redis
//! ([`Subscription`]).

use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use futures::{future::try_join_all, StreamExt};
use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    Cmd, FromRedisValue, IntoConnectionInfo, Msg, Pipeline, PushKind, RedisFuture, RedisResult,
    Value,
};
use tokio::sync::mpsc;

/// The scheme that makes `redis_url` a list of Redis Cluster seed nodes.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Redis connection attempts before a command fails with 503. The connection manager
/// reconnects in the background on the next command anyway, so retrying longer here only
/// makes every request of an outage wait (its default of 6 retries took ~7–9 s).
const REDIS_RETRIES: usize = 1;
/// First delay between Redis connection attempts, doubling up to [`REDIS_MAX_DELAY`].
const REDIS_MIN_DELAY: Duration = Duration::from_millis(100);
const REDIS_MAX_DELAY: Duration = Duration::from_millis(500);
/// A connection attempt to Redis (loopback or LAN, answering in well under a millisecond)
/// that takes longer than this is to a Redis that is down or unreachable.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Every command here is O(1) or O(members of a group); one that is not answered within this
/// time is to a stalled Redis: fail the request (503) rather than hold it. On a cluster it
/// bounds the whole request, redirects and retries included (a failover's MOVED answers
/// are followed within it).
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is, from `redis_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis: the URL as given.
    Single(String),
    /// A Redis Cluster: one `redis://` URL per seed node.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// Parses `redis_url`; the error says what is wrong without repeating the URL (it may
    /// hold a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
            url.into_connection_info()
                .map_err(|e| format!("not a Redis URL: {}", e.detail().unwrap_or("invalid")))?;
            return Ok(Self::Single(url.to_owned()));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() || authority.contains('?') {
            return Err(format!(
                "a {CLUSTER_SCHEME} URL takes no database or options (a cluster has only \
                 database 0): end it after the last host:port"
            ));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let nodes: Vec<String> = hosts
            .split(',')
            .map(|host| format!("redis://{userinfo}{}", host.trim()))
            .collect();
        if hosts.trim().is_empty() || nodes.iter().any(|n| n.ends_with("@") || n.ends_with("//")) {
            return Err(format!(
                "a {CLUSTER_SCHEME} URL lists host:port of one or more cluster nodes, \
                 comma-separated"
            ));
        }
        for node in &nodes {
            node.as_str().into_connection_info().map_err(|e| {
                format!(
                    "a {CLUSTER_SCHEME} URL lists host:port of cluster nodes: {}",
                    e.detail().unwrap_or("invalid")
                )
            })?;
        }
        Ok(Self::Cluster(nodes))
    }

    fn cluster_client(nodes: &[String]) -> ClusterClientBuilder {
        ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(REDIS_CONNECT_TIMEOUT)
            .response_timeout(REDIS_RESPONSE_TIMEOUT)
    }
}

/// A connection to Redis or to a Redis Cluster; cheap to clone (clones share it).
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects to the Redis or Redis Cluster of `url`.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        match RedisTarget::parse(url).map_err(|e| anyhow::anyhow!("redis_url: {e}"))? {
            RedisTarget::Single(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(REDIS_RETRIES)
                    .set_min_delay(REDIS_MIN_DELAY)
                    .set_max_delay(REDIS_MAX_DELAY)
                    .set_connection_timeout(Some(REDIS_CONNECT_TIMEOUT))
                    .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT));
                let manager = redis::Client::open(url)
                    .context("parsing redis_url")?
                    .get_connection_manager_with_config(config)
                    .await
                    .context("connecting to Redis")?;
                Ok(Self::Single(manager))
            }
            RedisTarget::Cluster(nodes) => {
                let cluster = RedisTarget::cluster_client(&nodes)
                    .build()
                    .context("parsing redis_url")?
                    .get_async_connection()
                    .await
                    .context("connecting to the Redis Cluster")?;
                Ok(Self::Cluster(cluster))
            }
        }
    }

    /// The command that publishes an event: sharded on a cluster, classic on one Redis (which
    /// may be older than 7).
    pub fn publish_command(&self) -> &'static str {
        match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        }
    }

    /// Runs `cmds`, each touching the single key that is its first argument (of any slot),
    /// and returns their replies in order: as one pipeline on one Redis; on a cluster as one
    /// pipeline per hash slot, all at once.
    pub async fn query_each<T: FromRedisValue>(&self, cmds: Vec<Cmd>) -> RedisResult<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let Self::Cluster(_) = self else {
            let mut pipe = redis::pipe();
            for cmd in cmds {
                pipe.add_command(cmd);
            }
            return pipe.query_async(&mut self.clone()).await;
        };
        // Per slot: its pipeline and where each of its replies goes.
        let mut slots: HashMap<u16, (Pipeline, Vec<usize>)> = HashMap::new();
        for (at, cmd) in cmds.into_iter().enumerate() {
            let key = match cmd.args_iter().nth(1) {
                Some(redis::Arg::Simple(key)) => key_slot(key),
                _ => 0,
            };
            let (pipe, positions) = slots
                .entry(key)
                .or_insert_with(|| (redis::pipe(), Vec::new()));
            pipe.add_command(cmd);
            positions.push(at);
        }
        let (pipes, positions): (Vec<Pipeline>, Vec<Vec<usize>>) = slots.into_values().unzip();
        let replies: Vec<Vec<Value>> = self.query_pipes(&pipes).await?;
        let mut ordered: Vec<Option<Value>> = vec![None; positions.iter().map(Vec::len).sum()];
        for (replies, positions) in replies.into_iter().zip(positions) {
            for (reply, at) in replies.into_iter().zip(positions) {
                ordered[at] = Some(reply);
            }
        }
        ordered
            .into_iter()
            .map(|reply| Ok(redis::from_redis_value(reply.unwrap_or(Value::Nil))?))
            .collect()
    }

    /// Runs `pipes` at once, each confined to one hash slot (e.g. an atomic block on one
    /// key); their replies in order.
    pub async fn query_pipes<T: FromRedisValue>(&self, pipes: &[Pipeline]) -> RedisResult<Vec<T>> {
        try_join_all(pipes.iter().map(|pipe| {
            let mut conn = self.clone();
            async move { pipe.query_async::<T>(&mut conn).await }
        }))
        .await
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A subscription to pub/sub channels that ends ([`next`](Self::next) gives `None`) when a
/// message may have been missed: the connection dropped. The caller subscribes afresh.
pub enum Subscription {
    /// Classic pub/sub on one Redis. The sink is kept, unused: dropping it would end the
    /// subscription.
    Single(PubSubSink, PubSubStream),
    /// Sharded pub/sub on a cluster: a connection of its own whose pushes (messages, and
    /// word of any node's connection dropping) arrive on the channel. Unbounded, as the
    /// classic stream is: the subscriber only hands each message on without waiting.
    Cluster(ClusterConnection, mpsc::UnboundedReceiver<redis::PushInfo>),
}

impl Subscription {
    /// Subscribes to `channels` on the Redis or Redis Cluster of `url`.
    pub async fn subscribe(url: &str, channels: &[String]) -> RedisResult<Self> {
        let invalid = |e: String| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "redis_url", e))
        };
        match RedisTarget::parse(url).map_err(invalid)? {
            RedisTarget::Single(url) => {
                let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
                for channel in channels {
                    pubsub.subscribe(channel).await?;
                }
                let (sink, stream) = pubsub.split();
                Ok(Self::Single(sink, stream))
            }
            RedisTarget::Cluster(nodes) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let mut conn = RedisTarget::cluster_client(&nodes)
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .push_sender(tx)
                    .build()?
                    .get_async_connection()
                    .await?;
                for channel in channels {
                    conn.ssubscribe(channel).await?;
                }
                Ok(Self::Cluster(conn, rx))
            }
        }
    }

    /// The next message; `None` once the subscription is lost. On a cluster, a connection
    /// to any node dropping counts: the library would resubscribe by itself, but what was
    /// published meanwhile is gone, and the caller must know.
    pub async fn next(&mut self) -> Option<Msg> {
        match self {
            Self::Single(_, stream) => stream.next().await,
            Self::Cluster(_, pushes) => loop {
                let push = pushes.recv().await?;
                match push.kind {
                    PushKind::Disconnection => return None,
                    PushKind::SMessage => {
                        if let Some(msg) = Msg::from_push_info(push) {
                            return Some(msg);
                        }
                    }
                    // Subscription confirmations and the like.
                    _ => {}
                }
            },
        }
    }
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (the text between
/// the first `{` and the next `}`, if not empty) or else of the whole key, modulo 16384.
fn key_slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|&b| b == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tag.unwrap_or(key)) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_are_redis_clusters() {
        // The examples of Redis' CLUSTER KEYSLOT documentation.
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_slot(b"bar{hash_tag}"), 2515);
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    }

    #[test]
    fn a_plain_url_is_one_redis_and_a_cluster_url_lists_its_seed_nodes() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379/2"),
            Ok(RedisTarget::Single("redis://127.0.0.1:6379/2".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/"),
            Ok(RedisTarget::Cluster(vec![
                "redis://10.0.0.1:7000".into(),
                "redis://10.0.0.2:7000".into()
            ]))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://:s3cret@h1:7000,h2:7001"),
            Ok(RedisTarget::Cluster(vec![
                "redis://:s3cret@h1:7000".into(),
                "redis://:s3cret@h2:7001".into()
            ]))
        );
    }

    #[test]
    fn bad_redis_urls_are_refused_without_echoing_them() {
        for bad in [
            "redis+cluster://",
            "redis+cluster://h1:7000,,h2:7000",
            "redis+cluster://h1:7000/3",
            "redis+cluster://h1:7000?protocol=3",
            "redis+cluster://:pw@",
            "redis+cluster://h1:notaport",
            "http://example.org",
            "nonsense",
        ] {
            let err = RedisTarget::parse(bad).expect_err(bad);
            assert!(!err.contains("pw@"), "{bad}: {err}");
        }
    }
}
