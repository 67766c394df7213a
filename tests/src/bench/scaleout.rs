//! `sohbet-bench scaleout`: what Redis Cluster costs each server instance, against one
//! Redis, in one run.
//!
//! For each store — the one Redis of `REDIS_URL` and a 3-master Redis Cluster this
//! benchmark starts on loopback (both in memory only, as `cargo xtask` runs Redis) — two
//! server instances share one database: first idle with clients connected (RSS and CPU of
//! an instance at rest), then a 20-member group whose members are split over the two
//! instances, senders on both, at fixed offered rates. Every delivery to a member on the
//! other instance went through the store's pub/sub (sharded on the cluster), so the
//! per-instance CPU per message is where the cluster's overhead shows.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{
    gateway::{
        connect, cpu_and_rss, fabricate_group, fabricate_users, run_step, spawn_reader,
        start_server, Clock, Server,
    },
    print_table, Samples,
};
use crate::{services::PrivateRedisCluster, TestDatabase};

/// Group size: members alternate between the two instances.
const MEMBERS: usize = 20;
/// Members that send, also alternating between instances.
const SENDERS: usize = 8;
/// Offered rates (messages/s, all senders together).
const RATES: [f64; 4] = [250.0, 500.0, 1000.0, 1500.0];
/// How long the instances sit idle, clients connected, for the idle figures.
const IDLE: Duration = Duration::from_secs(20);

pub async fn run() {
    let single = std::env::var("REDIS_URL").expect("REDIS_URL");
    let cluster = tokio::task::spawn_blocking(PrivateRedisCluster::start_in_memory)
        .await
        .expect("start the Redis Cluster");
    let mut idle_rows = Vec::new();
    let mut load_rows = Vec::new();
    for (store, url) in [
        ("one Redis", single),
        ("Redis Cluster, 3 masters", cluster.url()),
    ] {
        let (idle, load) = measure(store, &url).await;
        idle_rows.push(idle);
        load_rows.extend(load);
    }
    drop(cluster);
    print_table(
        "Scale-out: two instances at rest, 10 gateway clients each (per instance)",
        &["store", "RSS MiB", "CPU % at rest"],
        &idle_rows,
    );
    print_table(
        "Scale-out: a 20-member group split over two instances (CPU and RSS per instance)",
        &[
            "store",
            "offered msg/s",
            "achieved msg/s",
            "delivered",
            "ack p99 ms",
            "delivery p50 ms",
            "p99 ms",
            "CPU % per instance",
            "CPU ms per 1,000 deliveries per instance",
            "CPU % redis (all nodes)",
            "RSS MiB per instance",
        ],
        &load_rows,
    );
}

/// Idle and loaded figures of two instances on the store of `url`.
async fn measure(store: &str, url: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let db = TestDatabase::create().await;
    let prefix = format!("bench:{}:", db.name);
    let servers = [
        start_server(&db, &prefix, url).await,
        start_server(&db, &prefix, url).await,
    ];
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.url)
        .await
        .expect("pool");
    let members = fabricate_users(&pool, url, &prefix, 0, MEMBERS).await;
    let ids: Vec<i64> = members.iter().map(|(id, _)| *id).collect();
    let group_id = fabricate_group(&pool, &ids).await;
    let clock = Arc::new(Clock(Instant::now()));
    let deliveries = Arc::new(Mutex::new(Samples::default()));
    let mut readers = Vec::new();
    for (i, (_, token)) in members.iter().enumerate() {
        let socket = connect(&servers[i % 2].base, token).await;
        readers.push(spawn_reader(socket, clock.clone(), deliveries.clone()));
    }

    let at_rest = |s: &Server| cpu_and_rss(s.pid);
    let before: Vec<_> = servers.iter().map(at_rest).collect();
    tokio::time::sleep(IDLE).await;
    let after: Vec<_> = servers.iter().map(at_rest).collect();
    let idle_cpu = before
        .iter()
        .zip(&after)
        .map(|((c0, _), (c1, _))| (c1 - c0) / IDLE.as_secs_f64() * 100.0)
        .sum::<f64>()
        / 2.0;
    let idle_rss = after.iter().map(|(_, rss)| *rss as f64).sum::<f64>() / 2.0 / 1024.0;
    let idle = vec![
        store.to_owned(),
        format!("{idle_rss:.0}"),
        format!("{idle_cpu:.2}"),
    ];

    let senders: Vec<(i64, String)> = members.iter().take(SENDERS).cloned().collect();
    let instances: Vec<&Server> = servers.iter().collect();
    let mut rows = Vec::new();
    for rate in RATES {
        let mut r = run_step(
            &instances,
            group_id,
            &senders,
            Some(rate),
            clock.clone(),
            deliveries.clone(),
            MEMBERS,
        )
        .await;
        let per_instance_cpu = r.cpu_pct[0] / 2.0;
        let deliveries_per_s = r.achieved * MEMBERS as f64 / 2.0;
        rows.push(vec![
            store.to_owned(),
            format!("{rate:.0}"),
            format!("{:.0}", r.achieved),
            format!("{}/{}", r.delivery.len(), r.expected_deliveries),
            format!("{:.1}", r.ack.percentile_ms(99.0)),
            format!("{:.1}", r.delivery.percentile_ms(50.0)),
            format!("{:.1}", r.delivery.percentile_ms(99.0)),
            format!("{per_instance_cpu:.0}"),
            // CPU % is CPU ms per 10 ms: per delivery handled by one instance.
            format!("{:.1}", per_instance_cpu * 10.0 / deliveries_per_s * 1000.0),
            format!("{:.0}", r.cpu_pct[2]),
            format!("{:.0}", r.rss_mib / 2.0),
        ]);
    }
    for r in readers {
        r.abort();
    }
    (idle, rows)
}
