//! The official `openai` Python package against a running InstaGen: models, chat (plain
//! and streaming, with and without usage), completions, embeddings and error classes.

use std::process::Command;

use crate::helpers::*;

#[tokio::test]
async fn official_openai_python_client_works_end_to_end() {
    let has_sdk = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_sdk {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the openai package (see .ci/run)"
        );
        return crate::services::skip(
            "python_sdk::official_openai_python_client_works_end_to_end",
            "python3 package `openai` is not installed (scripts/test.sh installs it)",
        );
    }
    let app = TestApp::spawn().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk.py");
    let mut python = Command::new("python3");
    python.arg(script);
    run_sdk_script(&app, python).await;
    let records = app.records(6).await;
    assert!(records.iter().any(|r| r.stream));
}
