//! The real coding agents, unchanged, through InstaGen: OpenAI's Codex CLI (`codex exec`,
//! streaming `POST /v1/responses`) and Anthropic's Claude Code (`claude -p`, streaming
//! `POST /v1/messages?beta=true`). Each runs a plain turn, then a turn where the model calls
//! the agent's shell tool, which the agent runs and reports back. The agents are optional
//! (`npm ci --prefix tests/agents`): without them these tests are reported skipped. Every
//! agent runs in a temporary home, with only the environment set here, under a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use instagen::config::{Config, ResponsesApi};
use mock_upstream::{Recorded, Script};
use serde_json::Value;

use crate::helpers::*;

const AGENTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents");
/// How long one agent run may take before it is killed and the test fails.
const AGENT_DEADLINE: Duration = Duration::from_secs(120);
/// The content of the file the tool turn's command prints: the model never wrote it, so
/// it reaches the upstream only if the agent really ran the tool.
const MARKER: &str = "instagen-marker-5d1c9e";
const PLAIN_REPLY: &str = "Plain answer relayed by InstaGen.";
const TOOL_REPLY: &str = "The marker file was read.";
/// The Claude-looking name the test model also answers to, as a README would configure it.
const CLAUDE_ALIAS: &str = "claude-sonnet-4-5";

/// The agent's launcher in `tests/agents/node_modules/.bin`, when it is installed and runs.
/// Claude Code's launcher is a placeholder until its install script copies the native
/// binary over it (npm may be told to run no scripts): its platform package's binary
/// (`@anthropic-ai/claude-code-<platform>/claude`) serves then.
/// The installed agent `name`, or `None` after reporting `test` as skipped with the reason.
fn agent_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    agent(name)
        .map_err(|why| crate::services::skip(test, &why))
        .ok()
}

fn agent(name: &str) -> Result<PathBuf, String> {
    let modules = Path::new(AGENTS_DIR).join("node_modules");
    let launcher = modules.join(".bin").join(name);
    if !launcher.exists() {
        return Err(format!(
            "{name} is not installed (npm ci --prefix tests/agents)"
        ));
    }
    let mut candidates = vec![launcher];
    if name == "claude"
        && let Ok(entries) = std::fs::read_dir(modules.join("@anthropic-ai"))
    {
        let mut natives: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("claude-code-"))
            .map(|e| e.path().join("claude"))
            .filter(|p| p.exists())
            .collect();
        natives.sort();
        candidates.extend(natives);
    }
    let mut why = Vec::new();
    for bin in candidates {
        match Command::new(&bin)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => return Ok(bin),
            Ok(o) => why.push(format!(
                "`{} --version` failed: {}",
                bin.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => why.push(format!("`{}` could not start: {e}", bin.display())),
        }
    }
    Err(why.join("; "))
}

/// What one agent run left behind.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "exit: {}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdin closed, output to files in `dir`) in a process group of its own; a
/// run past [`AGENT_DEADLINE`] has its whole group killed and fails the test.
async fn run_agent(mut cmd: Command, dir: &Path) -> Run {
    use std::os::unix::process::CommandExt;
    let out_path = dir.join("agent.stdout");
    let err_path = dir.join("agent.stderr");
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .process_group(0);
    let waited = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().expect("the agent starts");
        let kill_group = |pid: u32| {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        };
        let deadline = Instant::now() + AGENT_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Whatever the agent left running in its group goes with it.
                kill_group(child.id());
                return Some(status);
            }
            if Instant::now() > deadline {
                kill_group(child.id());
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let status = tokio::time::timeout(AGENT_DEADLINE + Duration::from_secs(30), waited)
        .await
        .expect("the agent's waiter returns")
        .unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(status) => Run {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "the agent ran past {AGENT_DEADLINE:?} and was killed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        ),
    }
}

/// A command for `bin` with nothing of this process's environment but `PATH`, `HOME` in
/// `dir`, and working directory `work`.
fn isolated(bin: &Path, dir: &Path, work: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("LANG", "C.UTF-8")
        .current_dir(work);
    std::fs::create_dir_all(dir.join("home")).unwrap();
    cmd
}

/// A temporary dir for one agent: a working directory holding `marker.txt`, and a home.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("marker.txt"), format!("{MARKER}\n")).unwrap();
    (dir, work)
}

/// A script answering with only a call of `tool` with `args`, as a model starting to work.
fn tool_call(tool: &str, args: &str) -> Script {
    Script {
        reply: Vec::new(),
        tool_call: Some((tool.to_owned(), args.to_owned())),
        ..Script::default()
    }
}

/// Metric lines of HTTP responses with a 4xx status InstaGen sent (none is expected).
async fn client_errors(app: &TestApp) -> Vec<String> {
    scrape_metrics(app)
        .await
        .lines()
        .filter(|l| l.starts_with("instagen_http_responses_total{") && l.contains("status=\"4"))
        .filter(|l| !l.ends_with(" 0"))
        .map(str::to_owned)
        .collect()
}

/// Asserts exactly `n` usage records, all served (200, streamed) on `endpoint` for the
/// test model, and no 4xx answer at all.
async fn assert_served(app: &TestApp, n: usize, endpoint: &str) {
    app.records(n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rows = app.records(n).await;
    let what: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {} stream={} model={:?} {:?}",
                r.endpoint, r.status, r.stream, r.model, r.error_kind
            )
        })
        .collect();
    assert_eq!(rows.len(), n, "one record per upstream answer: {what:#?}");
    for r in &rows {
        assert_eq!(
            (&*r.endpoint, r.status, r.stream),
            (endpoint, 200, true),
            "{what:#?}"
        );
        assert_eq!(r.model.as_deref(), Some(MODEL), "{what:#?}");
        assert!(r.input_tokens > 0, "{what:#?}");
    }
    let errors = client_errors(app).await;
    assert!(errors.is_empty(), "InstaGen answered with 4xx: {errors:#?}");
}

fn paths(requests: &[Recorded]) -> Vec<&str> {
    requests.iter().map(|r| r.path.as_str()).collect()
}

/// The names of the function tools in an upstream request (chat, Responses or Messages).
fn tool_names(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            t["function"]["name"]
                .as_str()
                .or_else(|| t["name"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Codex CLI

/// Codex's `config.toml` for InstaGen at `base_url`: the provider, with `top_level` lines
/// before the tables and `tables` after them.
fn codex_config(base_url: &str, top_level: &str, tables: &str) -> String {
    format!(
        r#"model = "{MODEL}"
model_provider = "instagen"
check_for_update_on_startup = false
{top_level}
[model_providers.instagen]
name = "InstaGen"
base_url = "{base_url}/v1"
env_key = "INSTAGEN_API_KEY"
wire_api = "responses"

[analytics]
enabled = false
{tables}"#
    )
}

/// What a self-hosted engine behind a translated route can serve: no hosted web search
/// and no sub-agent tools (which Codex sends as a `namespace` tool).
const CODEX_FOR_CHAT_ENGINES: (&str, &str) = (
    "web_search = \"disabled\"\n",
    "\n[agents]\nenabled = false\n",
);

/// Runs `codex exec PROMPT` against `app` with `config` (top-level lines, tables).
async fn codex(app: &TestApp, bin: &Path, config: (&str, &str), prompt: &str) -> Run {
    let (dir, work) = workspace();
    let home = dir.path().join("codex-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        codex_config(&app.url(""), config.0, config.1),
    )
    .unwrap();
    let mut cmd = isolated(bin, dir.path(), &work);
    cmd.env("CODEX_HOME", &home)
        .env("INSTAGEN_API_KEY", &app.key)
        .args([
            "exec",
            "--strict-config",
            "--skip-git-repo-check",
            "--ephemeral",
            "--color",
            "never",
            // The tool turn runs `cat` in the temporary working directory; Codex's own
            // sandbox (bubblewrap) needs user namespaces that CI containers may lack.
            "--dangerously-bypass-approvals-and-sandbox",
            prompt,
        ]);
    run_agent(cmd, dir.path()).await
}

/// Codex's plain turn, then its tool turn (`exec_command` running `cat marker.txt`);
/// returns the upstream requests of each.
async fn codex_turns(
    app: &TestApp,
    bin: &Path,
    config: (&str, &str),
) -> (Vec<Recorded>, Vec<Recorded>) {
    app.mock.push(Script::reply(PLAIN_REPLY));
    let run = codex(app, bin, config, "say hi").await;
    assert!(run.status.success(), "{}", run.describe());
    assert!(run.stdout.contains(PLAIN_REPLY), "{}", run.describe());
    let plain = app.mock.requests();

    app.mock
        .push(tool_call("exec_command", r#"{"cmd":"cat marker.txt"}"#));
    app.mock.push(Script::reply(TOOL_REPLY));
    let run = codex(app, bin, config, "show me marker.txt").await;
    assert!(run.status.success(), "{}", run.describe());
    assert!(run.stdout.contains(TOOL_REPLY), "{}", run.describe());
    let tools = app.mock.requests().split_off(plain.len());
    (plain, tools)
}

#[tokio::test]
async fn codex_cli_completes_plain_and_tool_turns_through_the_responses_api() {
    let Some(bin) = agent_or_skip(
        "codex",
        "coding_agents::codex_cli_completes_plain_and_tool_turns_through_the_responses_api",
    ) else {
        return;
    };
    // The default route: Responses translated to chat completions for the engine.
    let app = TestApp::spawn().await;
    let (plain, tools) = codex_turns(&app, &bin, CODEX_FOR_CHAT_ENGINES).await;

    assert_eq!(paths(&plain), ["/v1/chat/completions"]);
    let first = plain[0].json();
    assert_eq!(first["model"], UPSTREAM_MODEL);
    assert_eq!(first["stream"], true);
    assert!(
        tool_names(&first).iter().any(|n| n == "exec_command"),
        "Codex's shell tool reaches the engine: {:?}",
        tool_names(&first)
    );
    assert_eq!(
        paths(&tools),
        ["/v1/chat/completions", "/v1/chat/completions"]
    );
    // The second request carries the call and what the command printed, as a tool message.
    let second = tools[1].json();
    let messages = second["messages"].as_array().unwrap();
    let result = messages
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap_or_else(|| panic!("no tool message in {second:#}"));
    assert_eq!(result["tool_call_id"], "call_mock");
    assert!(
        result["content"].as_str().unwrap().contains(MARKER),
        "{result:#}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["tool_calls"][0]["function"]["name"] == "exec_command"),
        "{second:#}"
    );
    assert_served(&app, 3, "responses").await;
}

#[tokio::test]
async fn codex_cli_with_its_default_tools_works_through_a_native_responses_route() {
    let Some(bin) = agent_or_skip(
        "codex",
        "coding_agents::codex_cli_with_its_default_tools_works_through_a_native_responses_route",
    ) else {
        return;
    };
    // A provider serving the Responses API itself (OpenAI) gets Codex's body allow-listed:
    // its hosted and namespaced tools go through, and its encrypted reasoning comes back.
    let app = TestApp::spawn_with(|c: &mut Config| {
        set_responses(&mut c.providers[0], ResponsesApi::Native)
    })
    .await;
    let (plain, tools) = codex_turns(&app, &bin, ("", "")).await;

    assert_eq!(paths(&plain), ["/v1/responses"]);
    let first = plain[0].json();
    assert_eq!(first["model"], UPSTREAM_MODEL);
    assert_eq!(first["store"], false);
    assert_eq!(first["stream"], true);
    assert!(
        tool_names(&first).iter().any(|n| n == "exec_command"),
        "{:?}",
        tool_names(&first)
    );
    assert_eq!(paths(&tools), ["/v1/responses", "/v1/responses"]);
    let second = tools[1].json();
    let input = second["input"].as_array().unwrap();
    let output = input
        .iter()
        .find(|i| i["type"] == "function_call_output")
        .unwrap_or_else(|| panic!("no function_call_output in {second:#}"));
    assert_eq!(output["call_id"], "call_mock");
    assert!(output.to_string().contains(MARKER), "{output:#}");
    assert!(
        input
            .iter()
            .any(|i| i["type"] == "function_call" && i["name"] == "exec_command"),
        "{second:#}"
    );
    assert!(
        input
            .iter()
            .any(|i| i["type"] == "reasoning" && i["encrypted_content"] == "enc_mock"),
        "the model's encrypted reasoning goes back to it: {second:#}"
    );
    assert_served(&app, 3, "responses").await;
}

#[tokio::test]
async fn codex_cli_sub_agent_tools_translate_for_chat_engines() {
    let Some(bin) = agent_or_skip(
        "codex",
        "coding_agents::codex_cli_sub_agent_tools_translate_for_chat_engines",
    ) else {
        return;
    };
    // Codex's default tool set holds `{"type":"namespace","name":"multi_agent_v1","tools":
    // [function tools]}`: function tools, grouped, which a chat engine can be offered
    // flattened. Only the hosted web search is turned off, as an engine cannot serve it.
    let app = TestApp::spawn().await;
    app.mock.push(Script::reply(PLAIN_REPLY));
    let run = codex(&app, &bin, ("web_search = \"disabled\"\n", ""), "say hi").await;
    assert!(
        run.status.success() && run.stdout.contains(PLAIN_REPLY),
        "Codex's namespaced sub-agent tools must not fail the request: {}",
        run.describe()
    );
    let sent = app.mock.requests();
    assert_eq!(paths(&sent), ["/v1/chat/completions"]);
    let names = tool_names(&sent[0].json());
    assert!(
        names.iter().any(|n| n.contains("spawn_agent")),
        "the namespace's function tools reach the engine: {names:?}"
    );
    assert_served(&app, 1, "responses").await;
}

// ---------------------------------------------------------------------------------------
// Claude Code

/// How Claude Code is given the InstaGen key: `ANTHROPIC_AUTH_TOKEN` (sent as a bearer
/// token) or `ANTHROPIC_API_KEY` (sent as `x-api-key`), and whether it lists the gateway's
/// models first (`CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY`: `GET /v1/models`).
#[derive(Clone, Copy)]
struct ClaudeSetup {
    key_env: &'static str,
    discovery: bool,
}

const BEARER: ClaudeSetup = ClaudeSetup {
    key_env: "ANTHROPIC_AUTH_TOKEN",
    discovery: false,
};

/// Runs `claude -p PROMPT` against `app` as `model`, with `extra` arguments; returns the
/// run and its JSON result.
async fn claude(
    app: &TestApp,
    bin: &Path,
    (model, setup): (&str, ClaudeSetup),
    prompt: &str,
    extra: &[&str],
) -> (Run, Value) {
    let (dir, work) = workspace();
    let mut cmd = isolated(bin, dir.path(), &work);
    if setup.discovery {
        cmd.env("CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY", "1");
    }
    cmd.env("ANTHROPIC_BASE_URL", app.url(""))
        .env(setup.key_env, &app.key)
        .env("ANTHROPIC_MODEL", model)
        // Background work on the small model lands on the same InstaGen model.
        .env("ANTHROPIC_DEFAULT_HAIKU_MODEL", model)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .args(["-p", prompt, "--output-format", "json"])
        .args(extra);
    let run = run_agent(cmd, dir.path()).await;
    let result: Value = serde_json::from_str(run.stdout.trim()).unwrap_or(Value::Null);
    (run, result)
}

/// Claude Code's plain turn, then its tool turn (`Bash` running `cat marker.txt`, allowed
/// with `--allowedTools Bash`); returns the upstream requests of each.
async fn claude_turns(
    app: &TestApp,
    bin: &Path,
    model: (&str, ClaudeSetup),
) -> (Vec<Recorded>, Vec<Recorded>) {
    app.mock.push(Script::reply(PLAIN_REPLY));
    let (run, result) = claude(app, bin, model, "say hi", &[]).await;
    assert!(run.status.success(), "{}", run.describe());
    assert_eq!(result["is_error"], false, "{}", run.describe());
    assert_eq!(result["result"], PLAIN_REPLY, "{}", run.describe());
    let plain = app.mock.requests();

    app.mock.push(tool_call(
        "Bash",
        r#"{"command":"cat marker.txt","description":"Print the marker file"}"#,
    ));
    app.mock.push(Script::reply(TOOL_REPLY));
    let (run, result) = claude(
        app,
        bin,
        model,
        "show me marker.txt",
        &["--allowedTools", "Bash"],
    )
    .await;
    assert!(run.status.success(), "{}", run.describe());
    assert_eq!(result["is_error"], false, "{}", run.describe());
    assert_eq!(result["result"], TOOL_REPLY, "{}", run.describe());
    assert_eq!(result["num_turns"], 2, "{}", run.describe());
    let tools = app.mock.requests().split_off(plain.len());
    (plain, tools)
}

#[tokio::test]
async fn claude_code_completes_plain_and_tool_turns_through_the_messages_api() {
    let Some(bin) = agent_or_skip(
        "claude",
        "coding_agents::claude_code_completes_plain_and_tool_turns_through_the_messages_api",
    ) else {
        return;
    };
    // In front of an OpenAI-compatible engine: Messages translated to chat completions.
    let app =
        TestApp::spawn_with(|c: &mut Config| c.models[0].aliases = vec![CLAUDE_ALIAS.into()]).await;
    let (plain, tools) = claude_turns(&app, &bin, (CLAUDE_ALIAS, BEARER)).await;

    assert_eq!(paths(&plain), ["/v1/chat/completions"]);
    let first = plain[0].json();
    assert_eq!(first["model"], UPSTREAM_MODEL);
    assert_eq!(first["stream"], true);
    assert!(
        tool_names(&first).iter().any(|n| n == "Bash"),
        "{:?}",
        tool_names(&first)
    );
    assert_eq!(
        paths(&tools),
        ["/v1/chat/completions", "/v1/chat/completions"]
    );
    let second = tools[1].json();
    let result = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap_or_else(|| panic!("no tool message in {second:#}"));
    assert_eq!(result["tool_call_id"], "call_mock");
    assert!(result["content"].to_string().contains(MARKER), "{result:#}");
    assert_served(&app, 3, "messages").await;
}

#[tokio::test]
async fn claude_code_completes_plain_and_tool_turns_in_front_of_an_anthropic_provider() {
    let Some(bin) = agent_or_skip(
        "claude",
        "coding_agents::claude_code_completes_plain_and_tool_turns_in_front_of_an_anthropic_provider",
    ) else {
        return;
    };
    let app = TestApp::spawn_with(move |c: &mut Config| {
        anthropic_provider(c, "sk-ant-test-0123456789");
        c.models[0].aliases = vec![CLAUDE_ALIAS.into()];
    })
    .await;
    // The other way to give the key, and the model list Claude Code may fetch first.
    let setup = ClaudeSetup {
        key_env: "ANTHROPIC_API_KEY",
        discovery: true,
    };
    let (plain, tools) = claude_turns(&app, &bin, (CLAUDE_ALIAS, setup)).await;

    assert_eq!(paths(&plain), ["/v1/messages"]);
    let first = plain[0].json();
    assert_eq!(first["model"], UPSTREAM_MODEL);
    assert_eq!(first["stream"], true);
    assert!(
        tool_names(&first).iter().any(|n| n == "Bash"),
        "{:?}",
        tool_names(&first)
    );
    assert_eq!(plain[0].header("x-api-key"), Some("sk-ant-test-0123456789"));
    assert_eq!(paths(&tools), ["/v1/messages", "/v1/messages"]);
    let second = tools[1].json();
    let results: Vec<&Value> = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|b| b["type"] == "tool_result")
        .collect();
    assert_eq!(results.len(), 1, "{second:#}");
    assert_eq!(results[0]["tool_use_id"], "toolu_mock");
    // Each run listed the models first, which InstaGen answers itself.
    let listed = "instagen_http_responses_total{route=\"/v1/models\",status=\"200\"} 2";
    let text = scrape_metrics(&app).await;
    assert!(text.contains(listed), "missing `{listed}` in\n{text}");
    assert!(
        results[0]["content"].to_string().contains(MARKER),
        "{second:#}"
    );
    assert_served(&app, 3, "messages").await;
}

#[tokio::test]
async fn claude_code_mid_conversation_system_messages_are_accepted() {
    let Some(bin) = agent_or_skip(
        "claude",
        "coding_agents::claude_code_mid_conversation_system_messages_are_accepted",
    ) else {
        return;
    };
    // Given a model name it does not know (the test model's own id), Claude Code assumes a
    // current model and sends its environment as a `{"role": "system"}` entry of
    // `messages` (Anthropic's mid-conversation system messages).
    let app = TestApp::spawn().await;
    app.mock.push(Script::reply(PLAIN_REPLY));
    let (run, result) = claude(&app, &bin, (MODEL, BEARER), "say hi", &[]).await;
    assert!(
        run.status.success() && result["result"] == PLAIN_REPLY,
        "Claude Code's system-role messages must be served: {}",
        run.describe()
    );
    assert_eq!(paths(&app.mock.requests()), ["/v1/chat/completions"]);
    assert_served(&app, 1, "messages").await;
}
