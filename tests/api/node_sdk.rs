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
    let mut node = Command::new("node");
    node.arg("openai_sdk.mjs").current_dir(dir);
    run_sdk_script(&app, node).await;
    let records = app.records(6).await;
    assert!(records.iter().any(|r| r.stream));
}
