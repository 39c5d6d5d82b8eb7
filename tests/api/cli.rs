//! The `instagen` binary: accounts, keys and usage from the command line, against the
//! store a running server uses; bad config exits 64 naming the key.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

fn write_config(app: &TestApp) -> std::path::PathBuf {
    let dir = app.data_dir();
    let path = dir.join("instagen.toml");
    let text = format!(
        "[server]\ndata_dir = \"{d}\"\nsecret = \"{TEST_SECRET}\"\n[store]\nurl = \"{u}\"\n[log]\nlevel = \"warn\"\n",
        d = dir.display(),
        u = store_url_for(&dir)
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn instagen(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_instagen"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI while an in-process server runs on this test's (single-threaded) runtime: a
/// blocking wait here would freeze the server, possibly inside a store transaction whose
/// lock the CLI then waits for.
async fn instagen_beside(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let config = config.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        instagen(&config, &args)
    })
    .await
    .unwrap()
}

async fn status_for(app: &TestApp, key: &str, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        let s = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat_body("a b"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if s == want || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cli_manages_accounts_and_keys_that_a_running_server_sees_within_a_second() {
    let app = TestApp::spawn().await;
    let config = write_config(&app);

    let (code, _, err) = instagen_beside(&config, &["accounts", "create", "beta"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = instagen_beside(
        &config,
        &[
            "keys",
            "create",
            "--account",
            "beta",
            "--name",
            "ci",
            "--description",
            "from cli",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    assert!(secret.starts_with("ig-"));

    assert_eq!(status_for(&app, secret, 200).await, 200);

    let (code, out, _) =
        instagen_beside(&config, &["keys", "list", "--account", "beta", "--json"]).await;
    assert_eq!(code, 0);
    let keys: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(keys[0]["id"], id);
    assert_eq!(keys[0]["description"], "from cli");
    assert!(
        !out.contains(secret.rsplit('-').next().unwrap()),
        "listing never shows the secret"
    );

    let (code, _, err) = instagen_beside(&config, &["keys", "disable", id]).await;
    assert_eq!(code, 0, "keys disable: {err}");
    assert_eq!(status_for(&app, secret, 401).await, 401);
    let (code, _, err) = instagen_beside(&config, &["keys", "enable", id]).await;
    assert_eq!(code, 0, "keys enable: {err}");
    assert_eq!(status_for(&app, secret, 200).await, 200);
    let (code, _, err) = instagen_beside(&config, &["keys", "delete", id]).await;
    assert_eq!(code, 0, "keys delete: {err}");
    assert_eq!(status_for(&app, secret, 401).await, 401);

    // Wait for the records of the successful calls, then summarise.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, out, err) = instagen_beside(
            &config,
            &["usage", "summary", "--account", "beta", "--json"],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let s: Value = serde_json::from_str(out.trim()).unwrap();
        if s["requests"].as_i64().unwrap() >= 2 || Instant::now() > deadline {
            assert!(s["requests"].as_i64().unwrap() >= 2);
            let cost = s["cost_usd"].as_str().unwrap();
            assert_eq!(
                cost.split('.').nth(1).unwrap().len(),
                9,
                "nine decimals: {cost}"
            );
            assert_eq!(s["models"][0]["model"], MODEL);
            assert!(s["models"][0]["reasoning_tokens"].is_i64(), "{s}");
            // The table names every kind of token too.
            let (code, out, _) =
                instagen_beside(&config, &["usage", "summary", "--account", "beta"]).await;
            assert_eq!(code, 0);
            assert!(
                out.contains("cache reads")
                    && out.contains("cache writes 5m")
                    && out.contains("reasoning"),
                "{out}"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn bad_config_exits_64_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap();
    let (code, _, err) = instagen(&path, &["migrate"]);
    assert_eq!(code, 64);
    assert!(err.contains("listen_addr"), "{err}");

    std::fs::write(&path, "[[models]]\nid = \"m\"\nprovider = \"p\"\ninput_usd_per_mtok = 0.2\noutput_usd_per_mtok = \"1\"\n").unwrap();
    let (code, _, err) = instagen(&path, &["migrate"]);
    assert_eq!(code, 64, "{err}");
}

#[test]
fn env_overrides_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nurl = \"sqlite://{}/x.db\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_instagen"))
        .arg("--config")
        .arg(&path)
        .args(["migrate"])
        .env(
            "INSTAGEN__STORE__URL",
            format!("sqlite://{}/from-env.db", dir.path().display()),
        )
        .env("INSTAGEN__SERVER__DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("from-env.db").exists());
    assert!(!dir.path().join("x.db").exists());
}

/// `server.worker_threads` sizes the served process's runtime (it was once read and then
/// ignored): the count is taken from the threads the kernel lists for the process.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn serve_runs_as_many_runtime_workers_as_configured() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(dir.path(), &mock.base_url(), "warn");
    // More than this machine's cores, so the default could not pass for it.
    let want = std::thread::available_parallelism().unwrap().get() + 3;
    set_worker_threads(&config, want);
    let server = ServerProcess::start(&config, &dir.path().join("server.log")).await;
    let workers = runtime_threads(server.child.id());
    server.kill9();
    // The runtime's blocking threads share the name: at least `want`.
    assert!(
        workers >= want,
        "{workers} runtime threads, {want} configured"
    );
}
