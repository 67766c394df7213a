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

/// A fresh profile, its driver and the app launched on it.
async fn start_app(name: &str) -> (PathBuf, Driver, Session) {
    let dir = profile(name);
    let driver = Driver::start(Path::new(APP), &dir).await;
    let session = driver.launch().await;
    (dir, driver, session)
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

/// An app on a fresh profile: its folder, its driver (which ends it when dropped), its window.
type App = (PathBuf, Driver, Session);

/// Two apps on fresh profiles, signed up on `base` as `a_name` and `b_name`, and friends.
async fn two_friends(base: &str, a_name: &str, b_name: &str) -> (App, App) {
    let (a, b) = (start_app(a_name).await, start_app(b_name).await);
    for (s, name) in [(&a.2, a_name), (&b.2, b_name)] {
        choose_server(s, base).await;
        sign_up(s, name).await;
    }
    befriend(&a.2, a_name, &b.2).await;
    (a, b)
}

/// `b` adds `a` (called `a_name`) by friend code; `a` accepts the request as it arrives.
async fn befriend(a: &Session, a_name: &str, b: &Session) {
    let code = a.text("[data-testid=my-friend-code]").await;
    assert_eq!(code.trim().len(), 8, "friend code {code:?}");
    b.type_into("[data-testid=add-friend-input]", code.trim())
        .await;
    b.click("[data-testid=add-friend-submit]").await;
    b.find("[data-testid=add-friend-result]").await;
    a.click("[data-testid=accept-request]").await;
    b.find(&format!("[data-testid=friend][data-username={a_name}]"))
        .await;
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
    let (_dir_a, _driver_a, a) = start_app("ana").await;
    let (dir_b, driver_b, b) = start_app("ben").await;

    // First run on both: the server address, then sign up.
    a.find("[data-testid=server-form]").await;
    a.screenshot(&shots.join("first-run.png")).await;
    choose_server(&a, &server.base).await;
    a.screenshot(&shots.join("login.png")).await;
    sign_up(&a, "ana").await;
    choose_server(&b, &server.base).await;
    sign_up(&b, "ben").await;

    befriend(&a, "ana", &b).await;
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

    // Ben starts another message and leaves it: the Rust side keeps the draft in the
    // profile folder (not in the web view's storage) once typing pauses.
    let draft = "a thought for later — ünïcode, <b>unsent</b>";
    b.type_into("[data-testid=composer]", draft).await;
    until_saved_draft(&dir_b, draft).await;

    // Ben quits and starts again: still logged in, the conversation is there.
    let b = restart(&driver_b, b).await;
    b.until(
        "the DM after the restart",
        "const e = document.querySelector('[data-testid=conversation]'); return e && e.dataset.title",
        json!([]),
    )
    .await;
    b.screenshot(&shots.join("after-restart.png")).await;
    // And the draft is back in its composer.
    b.click("[data-testid=conversation]").await;
    let restored = b
        .until(
            "the draft restored",
            "const c = document.querySelector('[data-testid=composer]'); return c && c.value",
            json!([]),
        )
        .await;
    assert_eq!(restored, json!(draft));
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

/// Quits the app of `s` and starts it again on the same profile, logged in as before.
async fn restart(driver: &Driver, s: Session) -> Session {
    s.quit().await;
    driver.wait_app_gone().await;
    let s = driver.launch().await;
    s.find("[data-testid=me-name]").await;
    s
}

/// Waits until the profile's drafts file holds `text` (the UI saves a draft once typing
/// pauses).
async fn until_saved_draft(profile: &Path, text: &str) {
    let started = std::time::Instant::now();
    loop {
        let saved = std::fs::read(profile.join("drafts.json"))
            .ok()
            .and_then(|b| {
                serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&b).ok()
            })
            .unwrap_or_default();
        if saved.values().any(|d| d == text) {
            return;
        }
        assert!(
            started.elapsed() < support::webdriver::WAIT,
            "the draft was not saved: {saved:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The ticks of the audio settings' processing checkboxes, once the page shows them:
/// `[echo cancellation, noise suppression, automatic gain]`.
async fn processing_ticks(s: &Session) -> Vec<bool> {
    let ticks = s
        .until(
            "the processing switches",
            "const ids = ['echo-cancellation', 'noise-suppression', 'auto-gain'];
             const boxes = ids.map(id => document.querySelector(`[data-testid=${id}]`));
             return boxes.every(b => b) && boxes.map(b => b.checked)",
            json!([]),
        )
        .await;
    serde_json::from_value(ticks).expect("three ticks")
}

/// The audio settings as the profile's `config.json` holds them.
fn saved_audio(profile: &Path) -> serde_json::Value {
    let bytes = std::fs::read(profile.join("config.json")).expect("config.json written");
    let config: serde_json::Value = serde_json::from_slice(&bytes).expect("config.json is JSON");
    config["audio"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_cancellation_toggled_in_settings_stays_across_reopening_and_a_restart() {
    let server = TestApp::spawn().await;
    let shots = screenshots();
    let dir = profile("fatma");
    let driver = Driver::start(Path::new(APP), &dir).await;
    let s = driver.launch().await;
    choose_server(&s, &server.base).await;
    sign_up(&s, "fatma").await;

    // A new profile starts with the voice engine's processing defaults.
    let engine = voice::dsp::SendSettings::default();
    s.click("[data-testid=nav-settings]").await;
    assert_eq!(
        processing_ticks(&s).await,
        [
            engine.echo_cancellation,
            engine.noise_suppression,
            engine.auto_gain
        ]
    );

    // A refused save (push-to-talk with a blank key) says why and changes nothing on disk.
    s.click("[data-testid=echo-cancellation]").await;
    s.click("[data-testid=push-to-talk]").await;
    s.clear("[data-testid=ptt-key]").await;
    s.type_into("[data-testid=ptt-key]", "  ").await;
    s.click("[data-testid=audio-save]").await;
    let refused = s.text("[data-testid=audio-error]").await;
    assert_eq!(refused, "Choose a push-to-talk key.");
    assert!(
        !dir.join("config.json").exists()
            || saved_audio(&dir)["echo_cancellation"] == json!(engine.echo_cancellation),
        "a refused save wrote the switch"
    );

    // With a key, the toggled switch is saved.
    s.clear("[data-testid=ptt-key]").await;
    s.type_into("[data-testid=ptt-key]", "F9").await;
    save_audio(&s).await;
    let toggled = !engine.echo_cancellation;
    let audio = saved_audio(&dir);
    assert_eq!(audio["echo_cancellation"], json!(toggled), "{audio}");
    assert_eq!(audio["auto_gain"], json!(engine.auto_gain), "{audio}");
    s.js(
        "document.querySelector('[data-testid=audio-settings]').scrollIntoView()",
        json!([]),
    )
    .await;
    s.screenshot(&shots.join("settings-audio-processing.png"))
        .await;
    let expected = [toggled, engine.noise_suppression, engine.auto_gain];

    // Another page and back: the settings page shows what was saved.
    s.click("[data-testid=nav-friends]").await;
    s.find("[data-testid=my-friend-code]").await;
    s.click("[data-testid=nav-settings]").await;
    assert_eq!(processing_ticks(&s).await, expected);

    // Quit and start again: still so.
    let s = restart(&driver, s).await;
    s.click("[data-testid=nav-settings]").await;
    assert_eq!(processing_ticks(&s).await, expected);
    assert_eq!(
        s.js(
            "return document.querySelector('[data-testid=ptt-key]').value",
            json!([])
        )
        .await,
        json!("F9")
    );
    s.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_microphone_test_in_settings_hears_the_microphone_and_finds_the_speakers_echo() {
    let server = TestApp::spawn().await;
    let shots = screenshots();
    let (dir, _driver, s) = start_app("gul").await;
    choose_server(&s, &server.base).await;
    sign_up(&s, "gul").await;
    // The virtual sound card's microphone is its speaker's monitor: it hears the speech
    // played into it, and then the test's own playback of what it recorded (an echo at
    // 0 dB, as from loud speakers next to the microphone). One sentence, said once the
    // test records: a sentence looped on through the playback competes with the echo for
    // the correlation (one CI run found no echo with it).
    audio_settings(&s, false).await;
    s.click("[data-testid=mic-test-start]").await;
    let talking = Talking::once(&dir);
    assert!(
        s.text("[data-testid=mic-test-status]")
            .await
            .contains("Say something"),
        "no word of what the test does while it runs"
    );
    s.until_for(
        std::time::Duration::from_secs(30),
        "the microphone test's result",
        "const r = document.querySelector('[data-testid=mic-test-result]'); return r && r.textContent",
        json!([]),
    )
    .await;
    drop(talking);
    let level = s.text("[data-testid=mic-test-level]").await;
    assert!(
        level.starts_with("Level:") && !level.contains("No sound"),
        "{level}"
    );
    let echo = s.text("[data-testid=mic-test-echo]").await;
    assert!(
        echo.contains("Your speakers reach the microphone"),
        "{echo}"
    );
    assert!(s
        .js(
            "return document.querySelector('[data-testid=mic-test-error]') === null",
            json!([])
        )
        .await
        .as_bool()
        .unwrap_or(false));
    s.js(
        "document.querySelector('[data-testid=mic-test]').scrollIntoView()",
        json!([]),
    )
    .await;
    s.screenshot(&shots.join("settings-mic-test.png")).await;
    s.quit().await;
}

/// Points the app's calls at the virtual sound card (`cargo xtask test` starts it: a
/// PipeWire null sink reached through ALSA's `pulse` device) through the audio settings,
/// with push-to-talk (on the default key, F8) on or off.
async fn audio_settings(s: &Session, push_to_talk: bool) {
    s.click("[data-testid=nav-settings]").await;
    for picker in ["input-device", "output-device"] {
        let chosen = s
            .until(
                "the virtual sound card among the devices",
                "const sel = document.querySelector(`[data-testid=${arguments[0]}]`);
                 const o = sel && [...sel.options].find(o => o.value === 'pulse' || o.value.endsWith(':pulse'));
                 if (!o) return null;
                 sel.value = o.value;
                 sel.dispatchEvent(new Event('change', { bubbles: true }));
                 return o.value",
                json!([picker]),
            )
            .await;
        assert!(
            chosen.as_str().is_some_and(|v| v.ends_with("pulse")),
            "{chosen}"
        );
    }
    s.js(
        "const c = document.querySelector('[data-testid=push-to-talk]'); if (c.checked !== arguments[0]) c.click()",
        json!([push_to_talk]),
    )
    .await;
    save_audio(s).await;
}

/// Saves the audio settings page and waits until it says so.
async fn save_audio(s: &Session) {
    s.click("[data-testid=audio-save]").await;
    s.until(
        "the audio settings saved",
        "const f = document.querySelector('[data-testid=audio-settings]'); return f && /Saved\\./.test(f.textContent)",
        json!([]),
    )
    .await;
}

/// Plays speech into the virtual sound card until dropped, so every microphone on it hears
/// someone talking.
struct Talking(std::process::Child);

impl Talking {
    /// Talks on until dropped: the same sentence over and over.
    fn start(dir: &Path) -> Self {
        Self::spawn(
            dir,
            "Hello, can you hear me? This is a test of the call.",
            "while true; do paplay --device=vsink \"$0\" || exit 1; done",
        )
    }

    /// Says one short sentence (2 s) and stops: a microphone that goes on listening after
    /// it hears only what the computer plays, not the speaker going on.
    fn once(dir: &Path) -> Self {
        Self::spawn(
            dir,
            "Hello, can you hear me?",
            "paplay --device=vsink \"$0\"",
        )
    }

    fn spawn(dir: &Path, sentence: &str, script: &str) -> Self {
        use std::os::unix::process::CommandExt;
        let wav = dir.join("speech.wav");
        let made = std::process::Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&wav)
            .arg(sentence)
            .status()
            .expect("run espeak-ng (cargo xtask test checks it is installed)");
        assert!(made.success(), "espeak-ng failed");
        // A process group of its own, so dropping it ends the `paplay` playing too (killing
        // only the loop left it playing on, holding the test's output open).
        let child = std::process::Command::new("bash")
            .args(["-c", script])
            .arg(&wav)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run paplay");
        Self(child)
    }
}

impl Drop for Talking {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// The participants `s` shows in its call panel, by name, with their flags.
const PARTICIPANTS: &str = "return [...document.querySelectorAll('[data-testid=call-panel] [data-testid=participant]')]
    .map(e => ({ name: e.dataset.name, muted: e.dataset.muted === 'true', connected: e.dataset.connected === 'true', speaking: e.dataset.speaking === 'true' }))";

/// Waits until `s` shows itself and `other` in its call, `other` connected.
async fn in_call_with(s: &Session, other: &str) {
    s.until(
        "both participants, the other one connected",
        &format!(
            "const p = (() => {{ {PARTICIPANTS} }})();
             return p.length === 2 && p.some(x => x.name === '{other}' && x.connected)"
        ),
        json!([]),
    )
    .await;
}

/// Whether `s` shows `who` speaking in its call panel.
async fn speaking(s: &Session, who: &str) -> bool {
    s.js(
        &format!(
            "const p = (() => {{ {PARTICIPANTS} }})(); return p.some(x => x.name === arguments[0] && x.speaking)"
        ),
        json!([who]),
    )
    .await
        == json!(true)
}

/// Waits until `s` shows `who` speaking (or, with `false`, not speaking).
async fn until_speaking(s: &Session, who: &str, on: bool) {
    s.until(
        if on { "speaking" } else { "no longer speaking" },
        &format!(
            "const p = (() => {{ {PARTICIPANTS} }})();
             return p.some(x => x.name === arguments[0] && x.speaking === arguments[1])"
        ),
        json!([who, on]),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_called_from_a_dm_accepts_and_both_are_in_the_call() {
    // Long enough to answer on a loaded machine, short enough to wait for a missed call.
    let server = TestApp::spawn_with(|s| s.ring_timeout_secs = 8).await;
    let shots = screenshots();
    let ((dir_a, _driver_a, a), (_dir_b, _driver_b, b)) =
        two_friends(&server.base, "cara", "cem").await;
    audio_settings(&a, false).await;
    audio_settings(&b, false).await;
    a.screenshot(&shots.join("settings-audio.png")).await;

    // Cara calls Cem from their DM: it rings on Cem's side, with her name. He declines.
    a.click("[data-testid=nav-friends]").await;
    a.click("[data-testid=friend][data-username=cem] [data-testid=message-friend]")
        .await;
    a.click("[data-testid=start-call]").await;
    a.find("[data-testid=call-waiting]").await;
    let caller = b.text("[data-testid=incoming-caller]").await;
    assert_eq!(caller, "cara");
    // The ringing box sits over the bottom right of Cem's settings page: the page scrolls
    // out from under it, down to the end of its last card.
    b.until(
        "the end of the settings page clear of the incoming call",
        "const view = document.querySelector('[data-testid=settings-view]');
         view.scrollTop = view.scrollHeight;
         const cards = view.querySelectorAll('.card');
         const end = cards[cards.length - 1].getBoundingClientRect().bottom;
         return end <= document.querySelector('[data-testid=incoming-call]').getBoundingClientRect().top",
        json!([]),
    )
    .await;
    b.screenshot(&shots.join("call-incoming.png")).await;
    b.click("[data-testid=decline-call]").await;
    let notice = a.text("[data-testid=call-notice]").await;
    assert!(notice.starts_with("The call was declined."), "{notice:?}");
    a.until(
        "the call over on Cara's side",
        "return !document.querySelector('[data-testid=call-panel]')",
        json!([]),
    )
    .await;

    // She calls again and Cem lets it ring out: a missed call for him, "No answer" for her.
    a.click("[data-testid=start-call]").await;
    b.find("[data-testid=incoming-call]").await;
    a.until(
        "no answer",
        "const e = document.querySelector('[data-testid=call-notice]'); return e && e.textContent.includes('No answer.')",
        json!([]),
    )
    .await;
    b.until(
        "the ringing gone and the missed call listed",
        "return !document.querySelector('[data-testid=incoming-call]') && document.querySelector('[data-testid=conversation] [data-testid=missed-call]')",
        json!([]),
    )
    .await;

    // The third time he answers.
    a.click("[data-testid=start-call]").await;
    b.find("[data-testid=incoming-call]").await;

    // Cem accepts: both see both, connected.
    b.click("[data-testid=accept-call]").await;
    for (s, other) in [(&a, "cem"), (&b, "cara")] {
        in_call_with(s, other).await;
    }
    b.until(
        "no ringing once answered, and the missed call seen",
        "return !document.querySelector('[data-testid=incoming-call]') && !document.querySelector('[data-testid=missed-call]')",
        json!([]),
    )
    .await;
    // The conversation list says who is in voice.
    let in_voice = a
        .text("[data-testid=conversation] [data-testid=in-voice]")
        .await;
    assert!(in_voice.contains('2'), "{in_voice:?}");

    // Audio flows through the sound card: speech played into it reaches each side from the
    // other, which lights the other's speaking indicator.
    let talking = Talking::start(&dir_a);
    for (s, other) in [(&a, "cem"), (&b, "cara")] {
        until_speaking(s, other, true).await;
    }
    a.screenshot(&shots.join("call.png")).await;
    drop(talking);

    // Link quality of the other side, on hover (RTT, loss, route).
    let quality = a
        .until(
            "the link quality of Cem",
            "const e = document.querySelector('[data-testid=participant][data-name=cem] [data-testid=quality]');
             return e && /Round trip \\d+ ms · loss [\\d.]+% · /.test(e.textContent) && e.textContent",
            json!([]),
        )
        .await;
    assert!(quality.as_str().is_some(), "{quality}");

    // Cem mutes: Cara sees it.
    b.click("[data-testid=mute]").await;
    a.until(
        "Cem shown muted",
        &format!(
            "const p = (() => {{ {PARTICIPANTS} }})(); return p.some(x => x.name === 'cem' && x.muted)"
        ),
        json!([]),
    )
    .await;
    b.screenshot(&shots.join("call-muted.png")).await;

    // Cara hangs up: Cem is alone in the call; Cara's panel is gone.
    a.click("[data-testid=hang-up]").await;
    a.until(
        "no call panel after hanging up",
        "return !document.querySelector('[data-testid=call-panel]')",
        json!([]),
    )
    .await;
    b.until(
        "Cara gone from the call",
        &format!("const p = (() => {{ {PARTICIPANTS} }})(); return p.length === 1"),
        json!([]),
    )
    .await;
    b.click("[data-testid=hang-up]").await;
    b.until(
        "nobody in voice any more",
        "return !document.querySelector('[data-testid=in-voice]')",
        json!([]),
    )
    .await;

    a.quit().await;
    b.quit().await;
}

/// WebDriver's key code of F8, the default push-to-talk key.
const F8: &str = "\u{E038}";

/// Presses or releases a key on the X display as a keyboard does (XTEST, through the X
/// server, so a key grabbed by an app goes to that app wherever the focus is).
fn x_key(action: &str, key: &str) {
    let done = std::process::Command::new("xdotool")
        .args([action, key])
        .status()
        .expect("run xdotool (cargo xtask test installs it)");
    assert!(done.success(), "xdotool {action} {key} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_talk_sends_only_while_the_key_is_held_globally_or_in_the_window() {
    let server = TestApp::spawn().await;
    let shots = screenshots();
    let ((dir_a, _driver_a, a), (dir_b, _driver_b, b)) =
        two_friends(&server.base, "dila", "emre").await;
    audio_settings(&a, true).await;
    audio_settings(&b, false).await;

    // Dila calls Emre, who answers.
    a.click("[data-testid=nav-friends]").await;
    a.click("[data-testid=friend][data-username=emre] [data-testid=message-friend]")
        .await;
    a.click("[data-testid=start-call]").await;
    b.click("[data-testid=accept-call]").await;
    in_call_with(&a, "emre").await;
    in_call_with(&b, "dila").await;

    // Dila's app registered the key as a global shortcut: no "in this window" fallback.
    let hint = a.text("[data-testid=ptt-hint]").await;
    assert_eq!(hint.trim(), "Push to talk: hold F8");

    // Speech plays into the sound card, which both microphones hear: Emre, without
    // push-to-talk, is heard by Dila at once…
    let talking = Talking::start(&dir_a);
    until_speaking(&a, "emre", true).await;
    // …while Dila's microphone hears the speech too but, her key up, sends none of it.
    let mut heard_by_her_mic = false;
    for _ in 0..20 {
        assert!(
            !speaking(&b, "dila").await,
            "Emre heard Dila with her push-to-talk key up"
        );
        let level = a
            .js(
                "return Number(document.querySelector('[data-testid=call-panel] [role=meter]').getAttribute('aria-valuenow'))",
                json!([]),
            )
            .await;
        heard_by_her_mic |= level.as_f64().is_some_and(|db| db > -50.0);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    assert!(
        heard_by_her_mic,
        "Dila's microphone level never showed the speech"
    );

    // Her key goes down on the display (not in her window): Emre hears her; up: silence.
    x_key("keydown", "F8");
    until_speaking(&b, "dila", true).await;
    a.screenshot(&shots.join("call-push-to-talk.png")).await;
    x_key("keyup", "F8");
    until_speaking(&b, "dila", false).await;

    // Emre turns push-to-talk on with the same key during the call, and automatic gain
    // control off (a processing switch the running call takes at once). Dila's app holds
    // the key on the display, so his cannot register it: it listens in his window instead,
    // says so, and he is silent until he holds the key there.
    b.click("[data-testid=nav-settings]").await;
    let auto_gain = processing_ticks(&b).await[2];
    b.click("[data-testid=auto-gain]").await;
    audio_settings(&b, true).await;
    assert_eq!(saved_audio(&dir_b)["auto_gain"], json!(!auto_gain));
    b.click("[data-testid=conversation]").await;
    let hint = b.text("[data-testid=ptt-hint]").await;
    assert_eq!(hint.trim(), "Push to talk: hold F8 (in this window)");
    until_speaking(&a, "emre", false).await;
    b.key(true, F8).await;
    until_speaking(&a, "emre", true).await;
    b.key(false, F8).await;
    until_speaking(&a, "emre", false).await;
    drop(talking);

    a.click("[data-testid=hang-up]").await;
    b.click("[data-testid=hang-up]").await;
    a.quit().await;
    b.quit().await;
}
