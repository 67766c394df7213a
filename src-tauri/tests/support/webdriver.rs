//! A small W3C WebDriver client over HTTP (reqwest) for driving the real app through
//! `tauri-driver`, which hands each session to Debian's WebKitWebDriver and the app
//! binary. One driver process per app instance, each with its own profile folder.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use serde_json::{json, Value};

/// How long a UI condition may take before the test fails: generous, the machine is shared.
pub const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn tauri_driver() -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", "command -v tauri-driver"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path.unwrap_or_else(|| {
        let home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
            });
        home.join("bin").join("tauri-driver")
    })
}

/// A `tauri-driver` process serving one app profile.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
    app: PathBuf,
    profile: PathBuf,
}

impl Driver {
    /// Starts a driver whose app instances keep their data in `profile`.
    pub async fn start(app: &Path, profile: &Path) -> Self {
        Self::start_logging(app, profile, None).await
    }

    /// [`Driver::start`], with the app's log (and the driver's) written to `log` instead of
    /// the test's output, to be read back (the launch benchmark reads the start-up marks).
    pub async fn start_logging(app: &Path, profile: &Path, log: Option<&Path>) -> Self {
        assert!(
            std::env::var_os("DISPLAY").is_some(),
            "no DISPLAY: run the end-to-end tests with `cargo xtask test`, which starts Xvfb"
        );
        let (port, native) = (free_port(), free_port());
        let child = Command::new(tauri_driver())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .env("SOHBET_DATA_DIR", profile)
            .env("RUST_LOG", "warn,sohbet_desktop=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("the app's log")),
                None => Stdio::inherit(),
            })
            .spawn()
            .expect("start tauri-driver (cargo xtask test installs it)");
        let driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            app: app.to_owned(),
            profile: profile.to_owned(),
        };
        let started = Instant::now();
        while driver
            .http
            .get(format!("{}/status", driver.base))
            .send()
            .await
            .is_err()
        {
            assert!(started.elapsed() < WAIT, "tauri-driver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        driver
    }

    /// The driver's process id (the app runs below it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to [`WAIT`]) until the app of a closed session has exited and the session
    /// bus has let go of its single-instance name: a launch before that finds the name
    /// taken, tries to hand over to the instance that is going away, and fails.
    pub async fn wait_app_gone(&self) {
        let started = Instant::now();
        let name = format!(
            "{}.SingleInstance",
            sohbet_desktop::instance_id(Some(&self.profile))
        );
        while !app_tree(self.pid()).is_empty() || bus_name_owned(&name) {
            assert!(started.elapsed() < WAIT, "the app did not exit");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Launches the app and opens a session on its window.
    pub async fn launch(&self) -> Session {
        let body =
            json!({"capabilities": {"alwaysMatch": {"tauri:options": {"application": self.app}}}});
        let started = Instant::now();
        loop {
            let resp = self
                .http
                .post(format!("{}/session", self.base))
                .json(&body)
                .send()
                .await
                .expect("POST /session");
            let v: Value = resp.json().await.expect("session answer");
            if let Some(id) = v["value"]["sessionId"].as_str() {
                return Session {
                    http: self.http.clone(),
                    url: format!("{}/session/{id}", self.base),
                };
            }
            // WebKitWebDriver may still be starting.
            assert!(started.elapsed() < WAIT, "no WebDriver session: {v}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Whether a D-Bus name has an owner on the session bus (false where there is no bus).
fn bus_name_owned(name: &str) -> bool {
    Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
        ])
        .arg(format!("string:{name}"))
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
}

/// Every process below `pid` (WebKitWebDriver, the app, WebKit's helpers).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
                for c in list
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok())
                {
                    out.push(c);
                    stack.push(c);
                }
            }
        }
    }
    out
}

impl Drop for Driver {
    fn drop(&mut self) {
        // End what the driver started too (WebKitWebDriver, the app, WebKit's processes),
        // and wait for it: they write to the test's output, and one still exiting after the
        // test would hold it open (nextest reports the test as leaky).
        let below = descendants(self.child.id());
        signal(&below, "TERM");
        if !all_gone(&below, Duration::from_secs(5)) {
            signal(&below, "KILL");
            all_gone(&below, Duration::from_secs(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pids: &[u32], name: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` has exited (a zombie has: it only waits to be reaped).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(true)
}

/// Waits up to `wait` for every one of `pids` to exit; whether they all did.
fn all_gone(pids: &[u32], wait: Duration) -> bool {
    let started = Instant::now();
    loop {
        if pids.iter().all(|p| gone(*p)) {
            return true;
        }
        if started.elapsed() > wait {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The app process a driver launched (below WebKitWebDriver) and every process below it,
/// with their names: the app and WebKit's web and network processes.
pub fn app_tree(driver_pid: u32) -> Vec<(u32, String)> {
    let comm = |p: u32| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let Some(app) = descendants(driver_pid)
        .into_iter()
        .find(|p| comm(*p).starts_with("sohbet-desktop") && !gone(*p))
    else {
        return Vec::new();
    };
    std::iter::once(app)
        .chain(descendants(app))
        .map(|p| (p, comm(p)))
        .collect()
}

/// One running app window.
pub struct Session {
    http: reqwest::Client,
    url: String,
}

/// An element reference as WebDriver returns it.
pub type Element = String;

impl Session {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("WebDriver request")
            .json()
            .await
            .expect("WebDriver answer");
        v["value"].clone()
    }

    /// Runs `script` in the page; `arguments[0..]` are `args`.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Waits until `script` returns something truthy, and returns it.
    pub async fn until(&self, what: &str, script: &str, args: Value) -> Value {
        self.until_for(WAIT, what, script, args).await
    }

    pub async fn until_for(&self, wait: Duration, what: &str, script: &str, args: Value) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script, args.clone()).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.contains_key("error"),
            };
            if truthy {
                return v;
            }
            if started.elapsed() > wait {
                let body = self
                    .js("return document.body.innerText.slice(0, 2000)", json!([]))
                    .await;
                panic!("timed out waiting for {what}; the window shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits for an element matching `css` and returns it.
    pub async fn find(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            let v = self
                .cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.starts_with("element-"))
                    .and_then(|(_, v)| v.as_str())
            }) {
                return id.to_owned();
            }
            if started.elapsed() > WAIT {
                let body = self
                    .js("return document.body.innerText.slice(0, 2000)", json!([]))
                    .await;
                panic!("no element {css}; the window shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Types into the element (WebDriver key codes such as `\u{E007}` for Enter work).
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn clear(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{el}/clear"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.cmd(reqwest::Method::GET, &format!("/element/{el}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Presses (`down`) or releases a key in the window through WebDriver's input actions,
    /// which WebKit delivers to the page itself, not through the X server.
    pub async fn key(&self, down: bool, key: &str) {
        let kind = if down { "keyDown" } else { "keyUp" };
        self.cmd(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard",
                "actions": [{"type": kind, "value": key}]}]})),
        )
        .await;
    }

    /// Saves a PNG of the window to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot folder");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Closes the window (the app exits).
    pub async fn quit(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}
