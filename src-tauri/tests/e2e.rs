//! End-to-end tests of the real desktop app: the built binary in a real window (Xvfb),
//! driven over WebDriver (tauri-driver + WebKitWebDriver), against a real server with
//! real PostgreSQL and Redis. Screenshots of the main screens go to
//! `target/desktop-screenshots/`.

mod support;

use std::path::{Path, PathBuf};

use serde_json::json;
use sohbet_tests::{TestApp, PASSWORD};
use support::webdriver::{Driver, Session};

const APP: &str = env!("CARGO_BIN_EXE_sohbet-desktop");
const ENTER: &str = "\u{E007}";

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("desktop-screenshots")
}

/// A fresh profile folder for one app instance.
fn profile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sohbet-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("profile folder");
    dir
}

async fn choose_server(s: &Session, base: &str) {
    s.type_into("#server", base).await;
    s.click("[data-testid=server-form] button[type=submit]")
        .await;
    s.find("[data-testid=auth-form]").await;
}

async fn sign_up(s: &Session, username: &str) {
    s.click("[data-testid=to-register]").await;
    s.type_into("#username", username).await;
    s.type_into("#email", &format!("{username}@example.org"))
        .await;
    s.type_into("#password", PASSWORD).await;
    s.click("[data-testid=auth-submit]").await;
    s.find("[data-testid=me-name]").await;
}

async fn form_error(s: &Session) -> String {
    s.until(
        "a form error",
        "const e = document.querySelector('[data-testid=form-error]'); return e && e.textContent",
        json!([]),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_shows_clear_errors_for_bad_addresses_passwords_and_rate_limits() {
    let server = TestApp::spawn_with(|s| s.login_account_limit = 2).await;
    server.register("carol").await;
    let dir = profile("errors");
    let driver = Driver::start(Path::new(APP), &dir).await;
    let s = driver.launch().await;

    // An address that is not http(s), then a server that does not answer.
    s.type_into("#server", "ftp://example.org").await;
    s.click("[data-testid=server-form] button[type=submit]")
        .await;
    assert!(
        form_error(&s).await.contains("http"),
        "invalid scheme refused"
    );
    s.clear("#server").await;
    s.type_into("#server", "http://127.0.0.1:9").await;
    s.click("[data-testid=server-form] button[type=submit]")
        .await;
    s.until(
        "the unreachable error",
        "const e = document.querySelector('[data-testid=form-error]'); return e && /reach/i.test(e.textContent)",
        json!([]),
    )
    .await;
    s.screenshot(&screenshots().join("server-unreachable.png"))
        .await;
    s.clear("#server").await;
    choose_server(&s, &server.base).await;

    // A wrong password, until the account is rate limited and the wait is shown.
    s.type_into("#login", "carol").await;
    s.type_into("#password", "not the password").await;
    s.click("[data-testid=auth-submit]").await;
    assert_eq!(form_error(&s).await, "Wrong username or password.");
    s.screenshot(&screenshots().join("login-wrong-password.png"))
        .await;
    let limited = s
        .until(
            "the rate-limit message",
            "const e = document.querySelector('[data-testid=form-error]');
             if (e && /Try again in \\d/.test(e.textContent)) return e.textContent;
             const b = document.querySelector('[data-testid=auth-submit]');
             if (!b.disabled) b.click();
             return null",
            json!([]),
        )
        .await;
    assert!(
        limited
            .as_str()
            .unwrap_or_default()
            .starts_with("Too many attempts"),
        "{limited}"
    );
    s.screenshot(&screenshots().join("login-rate-limited.png"))
        .await;
    s.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_befriend_chat_and_stay_logged_in_across_a_restart() {
    let server = TestApp::spawn().await;
    let shots = screenshots();
    let (dir_a, dir_b) = (profile("ana"), profile("ben"));
    let driver_a = Driver::start(Path::new(APP), &dir_a).await;
    let driver_b = Driver::start(Path::new(APP), &dir_b).await;
    let a = driver_a.launch().await;
    let b = driver_b.launch().await;

    // First run on both: the server address, then sign up.
    a.find("[data-testid=server-form]").await;
    a.screenshot(&shots.join("first-run.png")).await;
    choose_server(&a, &server.base).await;
    a.screenshot(&shots.join("login.png")).await;
    sign_up(&a, "ana").await;
    choose_server(&b, &server.base).await;
    sign_up(&b, "ben").await;

    // Ben adds Ana by her friend code; Ana accepts the request as it arrives.
    let code = a.text("[data-testid=my-friend-code]").await;
    assert_eq!(code.trim().len(), 8, "friend code {code:?}");
    b.type_into("[data-testid=add-friend-input]", code.trim())
        .await;
    b.click("[data-testid=add-friend-submit]").await;
    b.find("[data-testid=add-friend-result]").await;
    a.click("[data-testid=accept-request]").await;
    b.find("[data-testid=friend][data-username=ana]").await;
    a.screenshot(&shots.join("friends.png")).await;

    // Ana opens the DM and sends two messages, one of them HTML-looking.
    a.click("[data-testid=friend][data-username=ben] [data-testid=message-friend]")
        .await;
    a.find("[data-testid=composer]").await;
    let html = "<img src=x onerror=alert(1)> <b>not bold</b>";
    a.type_into("[data-testid=composer]", &format!("{html}{ENTER}"))
        .await;
    a.type_into(
        "[data-testid=composer]",
        &format!("hello ben, see https://example.org{ENTER}"),
    )
    .await;
    a.until(
        "both messages on Ana's side",
        "return document.querySelectorAll('[data-testid=message]').length === 2",
        json!([]),
    )
    .await;

    // Ben sees the conversation with two unread and the last message.
    let badge = b
        .until(
            "the unread badge",
            "const e = document.querySelector('[data-testid=conversation] [data-testid=unread-badge]'); return e && e.textContent.trim()",
            json!([]),
        )
        .await;
    assert_eq!(badge, json!("2"));
    b.screenshot(&shots.join("conversation-list.png")).await;

    // Ben opens it: the HTML-looking message is text, nothing was made of it.
    b.click("[data-testid=conversation]").await;
    let texts = b
        .until(
            "the messages in Ben's chat",
            "const t = [...document.querySelectorAll('[data-testid=message-text]')].map(e => e.textContent); return t.length === 2 && t",
            json!([]),
        )
        .await;
    assert_eq!(texts[0], json!(html));
    let made = b
        .js(
            "const t = document.querySelector('[data-testid=chat]'); return t.querySelectorAll('img, b').length",
            json!([]),
        )
        .await;
    assert_eq!(made, json!(0), "no element was created from message text");
    let link = b
        .js("const a = document.querySelector('[data-testid=message-text] a'); return a && a.getAttribute('href')", json!([]))
        .await;
    assert_eq!(link, json!("https://example.org"));
    b.until(
        "the badge gone once read",
        "return !document.querySelector('[data-testid=unread-badge]')",
        json!([]),
    )
    .await;

    // Ana sees her messages read.
    a.until(
        "the read receipt",
        "const e = document.querySelector('[data-testid=receipt]'); return e && e.textContent.trim() === 'Seen'",
        json!([]),
    )
    .await;

    // Ben types: Ana sees it; Ben answers.
    b.type_into("[data-testid=composer]", "typing a rep").await;
    a.until(
        "the typing indicator",
        "return /ben is typing/.test(document.querySelector('[data-testid=typing]').textContent)",
        json!([]),
    )
    .await;
    a.screenshot(&shots.join("chat-typing.png")).await;
    b.type_into("[data-testid=composer]", &format!("ly{ENTER}"))
        .await;
    a.until(
        "Ben's reply",
        "return [...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === 'typing a reply')",
        json!([]),
    )
    .await;
    a.screenshot(&shots.join("chat.png")).await;
    b.screenshot(&shots.join("chat-ben.png")).await;

    a.click("[data-testid=nav-settings]").await;
    a.find("[data-testid=sessions] li").await;
    a.screenshot(&shots.join("settings.png")).await;

    // Ben quits and starts again: still logged in, the conversation is there.
    b.quit().await;
    let b = driver_b.launch().await;
    b.find("[data-testid=me-name]").await;
    b.until(
        "the DM after the restart",
        "const e = document.querySelector('[data-testid=conversation]'); return e && e.dataset.title",
        json!([]),
    )
    .await;
    b.screenshot(&shots.join("after-restart.png")).await;
    assert!(
        !dir_b.join("session-token").exists() || {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(dir_b.join("session-token"))
                .map(|m| m.permissions().mode() & 0o777 == 0o600)
                .unwrap_or(false)
        },
        "a token file, if used, is private"
    );

    a.quit().await;
    b.quit().await;
}
