//! Generated requests over the whole REST API, from the server's own OpenAPI document:
//! schemathesis (PyPI, pinned; `cargo xtask test` installs it and names it in
//! `SOHBET_SCHEMATHESIS`) sends valid and invalid requests as a signed-in user for a
//! bounded time. No answer may be a 5xx, and every answer's status, content type and body
//! must be ones the document gives (errors in the one error shape): a response the document
//! does not describe is a bug in the server or in its annotations.

use std::{process::Stdio, time::Duration};

use sohbet_tests::TestApp;

/// The generator's time budget: long enough to reach every operation many times over,
/// short enough for every test run (the whole test takes about this plus a few seconds).
const BUDGET_SECS: &str = "120";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_only_documented_answers_and_never_a_server_error() {
    let st = std::env::var("SOHBET_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "SOHBET_SCHEMATHESIS is not set: run the tests with `cargo xtask test`, which \
             installs schemathesis (tests/scripts/setup-schemathesis.sh)"
        )
    });
    let app = TestApp::spawn().await;
    // Things for generated ids to find: a friend, a group with messages, a DM.
    let [me, friend] = app.users(["generated", "friend"]).await;
    let group = app.group_with(&me, &[&friend]).await;
    app.send(&friend, group, "hello").await;
    let dm = app.dm(&me, &friend).await;
    app.send(&me, dm, "hi").await;

    // Its cache (failures to replay first next time) lives beside it, not in the source tree.
    let venv = std::path::Path::new(&st)
        .ancestors()
        .nth(2)
        .expect("st lives in <venv>/bin");
    let run = tokio::process::Command::new(&st)
        .current_dir(venv)
        .args(["run", &app.url("/api/openapi.json"), "--url", &app.base])
        .args(["--header", &format!("Authorization: Bearer {}", me.token)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        // Ending its own session would leave the rest of the run nothing but 401s (the
        // stateful phase finds the session's id in `GET /api/auth/sessions`).
        .args(["--exclude-path", "/api/auth/logout"])
        .args(["--exclude-path", "/api/auth/sessions/{session_id}"])
        .args([
            "--max-time",
            BUDGET_SECS,
            "--workers",
            "2",
            "--seed",
            "20261202",
        ])
        .args(["--request-timeout", "20", "--suppress-health-check", "all"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start schemathesis");
    // The budget, plus the phases that run before it counts and the report.
    let limit = Duration::from_secs(BUDGET_SECS.parse::<u64>().expect("secs") + 120);
    let out = tokio::time::timeout(limit, run.wait_with_output())
        .await
        .expect("schemathesis ends within its budget")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The summary (operations, phases, cases) for the test's log.
    let summary = stdout.find("SUMMARY").map_or("", |at| &stdout[at..]);
    println!("{summary}");
    assert!(
        out.status.success(),
        "schemathesis found answers the document does not describe ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // It really tested: the summary counts the cases it generated.
    assert!(
        summary.contains("generated"),
        "no summary from schemathesis:\n{stdout}\n{stderr}"
    );
}
