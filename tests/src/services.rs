//! Private PostgreSQL and Redis servers for fault tests: a test that stops or restarts a
//! store must never touch the shared ones every other test is using in parallel.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Every write on disk before it is answered (AOF, fsync always), so a restarted Redis
/// comes back with what it acknowledged; no RDB snapshots.
const PERSISTENT: [&str; 6] = [
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
];

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A folder under the system's temporary directory, unique to this process and port.
fn scratch_dir(kind: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sohbet-{kind}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A Redis of the test's own, with persistence on (as self-hosters should run it), so it
/// can be restarted without disturbing the shared test Redis.
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let port = free_port();
        let mut redis = Self {
            port,
            dir: scratch_dir("redis", port),
            child: None,
        };
        redis.spawn();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(PERSISTENT)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        // Ready once it answers.
        for _ in 0..200 {
            let ping = redis::Client::open(self.url())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if ping.is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("private redis did not start");
    }

    /// Stops Redis as an operator does (SHUTDOWN writes the append-only file).
    pub fn stop(&mut self) {
        if let Ok(mut conn) = redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut conn);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// Stops it, then starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL cluster of the test's own (initdb'd into a temporary folder), which the test
/// may stop and start at will.
pub struct PrivatePostgres {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
}

/// Where `initdb` and `pg_ctl` are: on `PATH`, else the newest `/usr/lib/postgresql/*/bin`
/// (as `cargo xtask` finds them).
fn pg_bindir() -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", "dirname \"$(command -v pg_ctl)\""])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.join("initdb").exists());
    on_path.unwrap_or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries (cargo xtask installs them)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        versions.sort();
        versions.pop().expect("initdb under /usr/lib/postgresql")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivatePostgres {
    /// Creates and starts a cluster; as root, it belongs to user `postgres` (initdb refuses
    /// root), which `cargo xtask` has created.
    pub fn start() -> Self {
        let port = free_port();
        let pg = Self {
            port,
            dir: scratch_dir("pg", port),
            bin: pg_bindir(),
            root: is_root(),
        };
        if pg.root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir));
        }
        run(pg
            .as_pg_user("initdb")
            .arg("-D")
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null()));
        pg.start_again();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_pg_user(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if self.root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) on the same port and data, and waits until it accepts.
    pub fn start_again(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(self
            .as_pg_user("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdout(Stdio::null()));
    }

    /// Stops the server as an operator's restart does (`-m fast`: sessions are terminated,
    /// open transactions roll back).
    pub fn stop(&self) {
        run(self
            .as_pg_user("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-t", "60", "-m", "fast", "stop"])
            .stdout(Stdio::null()));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .as_pg_user("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A Redis Cluster of the test's own: three masters without replicas on loopback, each
/// with persistence on (as self-hosters should run it), so a node can be restarted with its
/// data. Started with `redis-server --cluster-enabled yes` and `redis-cli --cluster create`,
/// as an operator would.
pub struct PrivateRedisCluster {
    nodes: Vec<ClusterNode>,
    dir: PathBuf,
    /// Persistence flags of every node.
    persistence: &'static [&'static str],
}

struct ClusterNode {
    port: u16,
    /// The cluster bus port, given explicitly: the default (port + 10000) may be taken or
    /// past 65535 for a port picked by the OS.
    bus_port: u16,
    child: Option<Child>,
}

/// Masters of a test cluster: the fewest Redis Cluster accepts.
const CLUSTER_MASTERS: usize = 3;

impl PrivateRedisCluster {
    /// A cluster whose nodes write every change to disk, so a node can restart.
    pub fn start() -> Self {
        Self::start_with(&PERSISTENT)
    }

    /// A cluster that keeps everything in memory, as the Redis `cargo xtask` starts does
    /// (for benchmarks comparing the two).
    pub fn start_in_memory() -> Self {
        Self::start_with(&["--save", "", "--appendonly", "no"])
    }

    fn start_with(persistence: &'static [&'static str]) -> Self {
        let mut ports = std::collections::BTreeSet::new();
        while ports.len() < CLUSTER_MASTERS * 2 {
            ports.insert(free_port());
        }
        let ports: Vec<u16> = ports.into_iter().collect();
        let nodes = ports
            .chunks_exact(2)
            .map(|pair| ClusterNode {
                port: pair[0],
                bus_port: pair[1],
                child: None,
            })
            .collect();
        let mut cluster = Self {
            dir: scratch_dir("redis-cluster", ports[0]),
            nodes,
            persistence,
        };
        for i in 0..CLUSTER_MASTERS {
            cluster.spawn(i);
        }
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        run(Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null()));
        cluster.wait_ok();
        cluster
    }

    /// The `redis_url` of the cluster: every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    fn node_url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[i].port)
    }

    fn query<T: redis::FromRedisValue>(&self, i: usize, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let mut conn = redis::Client::open(self.node_url(i))?.get_connection()?;
        cmd.query(&mut conn)
    }

    fn spawn(&mut self, i: usize) {
        let node_dir = self.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let node = &mut self.nodes[i];
        let child = Command::new("redis-server")
            .args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-port", &node.bus_port.to_string()])
            .arg("--cluster-config-file")
            .arg(node_dir.join("nodes.conf"))
            // A master that is down is noticed by the others within this (ms).
            .args(["--cluster-node-timeout", "2000"])
            .args(self.persistence)
            .arg("--dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        node.child = Some(child);
        for _ in 0..200 {
            if self.query::<String>(i, &redis::cmd("PING")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("cluster node {i} did not start");
    }

    /// Waits until every node says the cluster is up (every slot served).
    fn wait_ok(&self) {
        for _ in 0..400 {
            let ok = (0..self.nodes.len()).all(|i| {
                self.query::<String>(i, redis::cmd("CLUSTER").arg("INFO"))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the Redis Cluster did not come up");
    }

    /// The node serving the hash slot of `key` (e.g. a pub/sub channel).
    pub fn owner_of(&self, key: &str) -> usize {
        let slot: i64 = self
            .query(0, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .expect("CLUSTER KEYSLOT");
        let ranges: Vec<(i64, i64, (String, i64))> = self
            .query(0, redis::cmd("CLUSTER").arg("SLOTS"))
            .map(|slots: Vec<Vec<redis::Value>>| {
                slots
                    .into_iter()
                    .filter_map(|range| {
                        let start = redis::from_redis_value_ref(range.first()?).ok()?;
                        let end = redis::from_redis_value_ref(range.get(1)?).ok()?;
                        let master: Vec<redis::Value> =
                            redis::from_redis_value_ref(range.get(2)?).ok()?;
                        let host = redis::from_redis_value_ref(master.first()?).ok()?;
                        let port = redis::from_redis_value_ref(master.get(1)?).ok()?;
                        Some((start, end, (host, port)))
                    })
                    .collect()
            })
            .expect("CLUSTER SLOTS");
        let (_, _, (_, port)) = ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .expect("every slot is served");
        self.nodes
            .iter()
            .position(|n| i64::from(n.port) == *port)
            .expect("a node of this cluster serves it")
    }

    /// Stops node `i` as an operator does (SHUTDOWN writes its append-only file), starts it
    /// again on the same port and data, and waits until the cluster is up again.
    pub fn restart(&mut self, i: usize) {
        let _ = self.query::<()>(i, &redis::cmd("SHUTDOWN"));
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.wait();
        }
        self.spawn(i);
        self.wait_ok();
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
