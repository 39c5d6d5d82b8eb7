//! The official `openai` npm package on Node against a running InstaGen: models, chat
//! (plain, streaming with usage, aborted), completions, embeddings and error classes.

use std::process::Command;

use crate::helpers::*;

#[tokio::test]
async fn official_openai_node_client_works_end_to_end() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/node");
    let installed = std::path::Path::new(dir)
        .join("node_modules/openai/package.json")
        .exists();
    let has_node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !(installed && has_node) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install Node and the openai package (see .ci/run)"
        );
        return crate::services::skip(
            "node_sdk::official_openai_node_client_works_end_to_end",
            "node or tests/sdk/node/node_modules is missing (npm ci --prefix tests/sdk/node)",
        );
    }
    let app = TestApp::spawn().await;
    let base = app.url("/v1");
    let key = app.key.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("openai_sdk.mjs")
            .current_dir(dir)
            .env("INSTAGEN_BASE_URL", base)
            .env("INSTAGEN_KEY", key)
            .env("INSTAGEN_MODEL", MODEL)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ALL OK"), "{stdout}");
    let records = app.records(6).await;
    assert!(records.iter().any(|r| r.stream));
}
