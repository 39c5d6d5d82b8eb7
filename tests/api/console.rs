//! The web console: served from the binary with a strict CSP, and driven end to end in
//! headless Chromium — log in, create a key, call the API with it, see the request and
//! its cost on the dashboard, export CSV, disable the key, delete the account.

use instagen::admin::{self, Actor};
use instagen::billing::Money;
use instagen::store::Role;
use serde_json::{Value, json};

use crate::browser::{self, Browser};
use crate::helpers::*;
use crate::services::skip;

const EMAIL: &str = "dana@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// What the console shows for an amount under a cent: the exact value, trailing zeros trimmed.
fn shown_usd(nanos: i64) -> String {
    assert!(
        nanos > 0 && nanos < 10_000_000,
        "the test expects a cost under a cent"
    );
    let exact = Money::from_nanos(nanos).to_string();
    format!("${}", exact.trim_end_matches('0'))
}

/// Makes the console's user (an operator when `operator`) the owner of the test account.
async fn owner(app: &TestApp, operator: bool) {
    admin::create_user(&app.store, &Actor::cli(), EMAIL, PASSWORD, operator)
        .await
        .unwrap();
    admin::add_member(
        &app.store,
        &Actor::cli(),
        &app.account_id,
        EMAIL,
        Role::Owner,
        None,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn console_is_served_from_the_binary_with_a_strict_content_security_policy() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/console/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(
        html.contains(r#"<script type="module" src="app.js">"#),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "no inline code"
    );

    let js = app
        .client
        .get(app.url("/console/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.headers().contains_key("content-security-policy"));

    let missing = app
        .client
        .get(app.url("/console/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/console"] {
        let r = no_redirects.get(app.url(path)).send().await.unwrap();
        assert!(r.status().is_redirection(), "{path}: {}", r.status());
        assert_eq!(r.headers()["location"], "/console/", "{path}");
    }
}

#[tokio::test]
async fn console_flow_login_key_request_dashboard_export_disable_delete_in_chromium() {
    if let Some(why) = browser::unavailable() {
        skip("console_flow_in_chromium", &why);
        return;
    }
    let app = TestApp::spawn().await;
    owner(&app, false).await;
    let b = Browser::start(1280, 900).await;

    // Log in; a first visit shows the privacy notice until acknowledged.
    b.goto(&app.url("/console/")).await;
    b.type_into("#login-form input[name=email]", EMAIL).await;
    b.type_into("#login-form input[name=password]", PASSWORD)
        .await;
    b.click("#login-form button[type=submit]").await;
    b.find("#card-requests").await;
    b.find("#privacy-notice").await;
    b.click("#privacy-ack").await;
    b.gone("#privacy-notice").await;

    // Create a key and read its secret off the page, once.
    b.goto(&app.url("/console/#/keys")).await;
    b.click("#create-key").await;
    b.type_into("dialog input[name=name]", "browser-key").await;
    b.type_into("dialog textarea[name=description]", "made in Chromium")
        .await;
    b.click("dialog button[type=submit]").await;
    let secret = b.property("#new-secret", "value").await;
    let secret = secret.as_str().unwrap().to_owned();
    assert!(secret.starts_with("ig-"), "{secret}");
    let warning = b.text_of(".secret-panel").await;
    assert!(warning.contains("shown only this once"), "{warning}");
    b.click("dialog button[type=submit]").await;
    b.gone("#new-secret").await;
    let row = b.find("#keys-table tr[data-status=active] .key-name").await;
    let _ = b.text(&row).await;
    let key_id = b
        .run(
            "return [...document.querySelectorAll('#keys-table tr')].find(r => r.textContent.includes('browser-key')).dataset.keyId",
            json!([]),
        )
        .await;
    let key_id = key_id.as_str().unwrap().to_owned();

    // Use it.
    let (status, body) = chat_status(&app, &secret, 200).await;
    assert_eq!(status, 200, "{body}");
    let usage = &body["usage"];
    let cost = test_cost(
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or(0),
        usage["completion_tokens"].as_u64().unwrap(),
    );

    // The dashboard shows it (records land within the writer's flush interval).
    b.goto(&app.url("/console/#/dashboard")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        b.find("#card-requests").await;
        if b.text_of("#card-requests .card-value").await == "1" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard never showed the request"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        b.click(".segmented button[data-value='24h']").await;
    }
    assert_eq!(b.text_of("#card-cost .card-value").await, shown_usd(cost));
    let input = b.text_of("#card-input .card-value").await;
    assert_eq!(input, usage["prompt_tokens"].as_u64().unwrap().to_string());
    let by_key = b.text_of("#by-key").await;
    assert!(by_key.contains("browser-key"), "{by_key}");
    let by_model = b.text_of("#by-model").await;
    assert!(by_model.contains(MODEL), "{by_model}");
    b.find("#usage-chart svg").await;
    b.click(".panel-head .segmented button[data-value='cost']")
        .await;
    b.wait_text(".panel-head h2", |t| t.starts_with("Cost per"))
        .await;
    b.screenshot("dashboard").await;

    // Export CSV holds the request, fetched the way the button would with the session.
    let href = b.property("#export-csv", "href").await;
    let csv = b
        .run_async(
            "const done = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(done, e => done(String(e)));",
            json!([href]),
        )
        .await;
    let csv = csv.as_str().unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains("key_id") && header.contains("cost_usd"),
        "{csv}"
    );
    let line = csv
        .lines()
        .find(|l| l.contains(&key_id))
        .unwrap_or_else(|| panic!("no record of {key_id} in {csv}"));
    assert!(line.contains(MODEL), "{line}");
    assert!(
        line.contains(&Money::from_nanos(cost).to_string()),
        "{line}"
    );

    // Narrow screens get the same dashboard.
    b.resize(390, 844).await;
    b.goto(&app.url("/console/#/dashboard")).await;
    b.find("#card-cost").await;
    b.screenshot("dashboard-390px").await;
    b.resize(1280, 900).await;

    // Disable the key: the API refuses it.
    b.goto(&app.url("/console/#/keys")).await;
    b.click(&format!("button[data-action=disable][data-key='{key_id}']"))
        .await;
    b.find(&format!(
        "#keys-table tr[data-key-id='{key_id}'][data-status=disabled]"
    ))
    .await;
    b.screenshot("keys").await;
    let (status, body) = chat_status(&app, &secret, 401).await;
    assert_eq!(status, 401, "{body}");

    // Delete the account with its typed name: everything goes, the login page returns.
    b.goto(&app.url("/console/#/account")).await;
    b.click("#delete-account").await;
    let submit = "dialog button[type=submit]";
    assert_eq!(b.property(submit, "disabled").await, Value::Bool(true));
    b.type_into("#confirm-name", "acme").await;
    assert_eq!(b.property(submit, "disabled").await, Value::Bool(false));
    b.click(submit).await;
    b.find("#login-form").await;
    let shown = b.text_of(".login-card").await;
    assert!(shown.contains("deleted"), "{shown}");
    let (status, _) = chat_status(&app, &app.key, 401).await;
    assert_eq!(status, 401, "the account's other keys are gone too");
    assert!(app.store.account(&app.account_id).await.is_err());
    b.quit().await;
}

/// A week of traffic on three keys and three models, a credit and a posting: what a
/// working account looks like, for the screenshots of every page.
async fn seed_busy_account(app: &TestApp) {
    let mut keys = vec![app.key_id.clone()];
    for (name, description) in [
        ("backend-prod", "API servers, eu-west"),
        ("staging", "CI and staging"),
        ("notebook", "Dana's experiments"),
    ] {
        let mut spec = key_spec(name);
        spec.description = description.to_owned();
        let created = admin::create_key(
            &app.store,
            &app.hasher,
            &Actor::cli(),
            &app.account_id,
            spec,
        )
        .await
        .unwrap();
        keys.push(created.id);
    }
    let models = [
        (MODEL, 200, 300),
        ("qwen3-235b", 220, 880),
        ("llama-3.1-8b", 30, 60),
    ];
    let now = instagen::time::now_ms();
    let hour = 3_600_000;
    let mut records = Vec::new();
    let mut n = 0u64;
    for h in 0..(7 * 24) {
        let started = now - (7 * 24 - h) * hour;
        // A working-day curve: busier in the afternoon, quieter at night.
        let load =
            3 + (10.0 * (1.0 + ((h % 24) as f64 / 24.0 * std::f64::consts::TAU).sin())) as u64;
        for i in 0..load {
            n += 1;
            let (model, input_price, output_price) = models[(n % 7 % 3) as usize];
            let input = 200 + (n * 37) % 1800;
            let output = 50 + (n * 53) % 700;
            // Prices in micro-USD per Mtok are nano-USD per token.
            let cost = (input * input_price + output * output_price) as i64;
            records.push(instagen::usage::UsageRecord {
                request_id: format!("req_seed_{n:07}"),
                account_id: app.account_id.clone(),
                key_id: keys[1 + (n % 5).min(2) as usize].clone(),
                endpoint: "chat.completions".into(),
                model: Some(model.into()),
                started_ms: started + (i as i64 * 97_000) % hour,
                finished_ms: started + 900,
                status: if n.is_multiple_of(97) { 502 } else { 200 },
                input_tokens: input,
                output_tokens: output,
                cost_nanos: cost,
                latency_us: 850_000,
                attempts: 1,
                ..Default::default()
            });
        }
    }
    // Requests refused before any model served them (an unknown model, say).
    for i in 0..3 {
        records.push(instagen::usage::UsageRecord {
            request_id: format!("req_seed_refused_{i}"),
            account_id: app.account_id.clone(),
            key_id: keys[1].clone(),
            endpoint: "chat.completions".into(),
            model: None,
            started_ms: now - (i + 1) * hour,
            finished_ms: now - (i + 1) * hour + 2,
            status: 404,
            error_kind: Some("model_not_found".into()),
            ..Default::default()
        });
    }
    app.store.insert_usage(&records).await.unwrap();
    admin::post_to_ledger(
        &app.store,
        &Actor::cli(),
        &app.account_id,
        instagen::billing::ledger::LedgerKind::Credit,
        "50.00",
        "prepaid credit, invoice 2026-11",
    )
    .await
    .unwrap();
    app.store.post_usage().await.unwrap();
    // An alert that fired, and its webhook waiting for a retry.
    let alert = admin::create_alert(
        &app.store,
        &Actor::cli(),
        &app.account_id,
        serde_json::from_value(
            serde_json::json!({"kind": "balance_below", "threshold_usd": "5",
            "webhook_url": "https://hooks.example.com/instagen", "email": false}),
        )
        .unwrap(),
        |_| "whsec_test".to_owned(),
    )
    .await
    .unwrap();
    let delivery = instagen::store::Delivery {
        rule_id: Some(alert.id.clone()),
        account_id: Some(app.account_id.clone()),
        // Far ahead: the delivery loop leaves it be.
        next_attempt_ms: now + 86_400_000,
        ..instagen::store::Delivery::queued(
            "dlv_seed".into(),
            instagen::store::Channel::Webhook,
            "https://hooks.example.com/instagen",
            "alert.balance_below",
            "{}",
            now,
        )
    };
    assert!(
        app.store
            .fire_alert(&alert.id, "below", &[delivery])
            .await
            .unwrap()
    );
}

/// Visits `hash`, waits for `ready`, checks no page error shows, and saves a screenshot.
async fn visit(b: &Browser, app: &TestApp, hash: &str, ready: &str, shot: &str) {
    b.goto(&app.url(&format!("/console/#/{hash}"))).await;
    b.find(ready).await;
    b.gone(".loading").await;
    assert!(
        b.find_now(".alert-error").await.is_none(),
        "{hash}: {}",
        b.text_of(".alert-error").await
    );
    b.screenshot(shot).await;
}

#[tokio::test]
async fn console_pages_render_a_busy_account_for_owners_and_operators_at_desktop_and_phone_width() {
    if let Some(why) = browser::unavailable() {
        skip("console_pages_in_chromium", &why);
        return;
    }
    let app = TestApp::spawn().await;
    seed_busy_account(&app).await;
    owner(&app, true).await;
    let b = Browser::start(1280, 900).await;
    b.goto(&app.url("/console/")).await;
    b.find("#login-form").await;
    b.screenshot("login").await;
    b.type_into("#login-form input[name=email]", EMAIL).await;
    b.type_into("#login-form input[name=password]", PASSWORD)
        .await;
    b.click("#login-form button[type=submit]").await;
    b.find("#card-requests").await;
    b.click("#privacy-ack").await;
    b.gone("#privacy-notice").await;

    // A week of traffic: thousands separators, the chart, both breakdowns.
    b.click(".segmented button[data-value='7d']").await;
    b.wait_text("#card-requests .card-value", |t| t.contains(','))
        .await;
    b.find("#by-model").await;
    let models = b.text_of("#by-model").await;
    assert!(
        models.contains("qwen3-235b") && models.contains("llama-3.1-8b"),
        "{models}"
    );
    assert!(models.contains("refused before routing"), "{models}");
    let keys = b.text_of("#by-key").await;
    assert!(
        keys.contains("backend-prod") && keys.contains("notebook"),
        "{keys}"
    );
    b.click(".panel-head .segmented button[data-value='tokens']")
        .await;
    b.find(".legend").await;
    b.screenshot("dashboard-7d").await;

    visit(&b, &app, "keys", "#keys-table", "keys-busy").await;
    b.click("#create-key").await;
    b.find("dialog input[name=name]").await;
    b.screenshot("keys-create-dialog").await;
    b.click("dialog button[type=button]").await;
    b.gone("dialog").await;

    visit(&b, &app, "billing", "#ledger", "billing").await;
    let balance = b.text_of("#card-balance .card-value").await;
    assert!(balance.starts_with('$'), "{balance}");
    let ledger = b.text_of("#ledger").await;
    assert!(
        ledger.contains("credit") && ledger.contains("usage"),
        "{ledger}"
    );
    let cost = b.text_of("#spend-by-model").await.to_lowercase();
    assert!(
        cost.contains("cache writes") && cost.contains("reasoning"),
        "{cost}"
    );
    visit(&b, &app, "security", "#audit-log", "security").await;
    visit(&b, &app, "alerts", "#deliveries-table", "alerts").await;
    let rules = b.text_of("#alerts-table").await;
    assert!(rules.contains("$5"), "{rules}");
    let log = b.text_of("#deliveries-table").await;
    assert!(
        log.contains("alert.balance_below") && log.contains("hooks.example.com"),
        "{log}"
    );
    visit(&b, &app, "account", "#members", "account").await;
    visit(
        &b,
        &app,
        "ops/accounts",
        "#ops-accounts",
        "operator-accounts",
    )
    .await;
    visit(&b, &app, "ops/models", "#ops-models", "operator-models").await;
    let prices = b.text_of("#ops-models").await;
    assert!(
        prices.contains(MODEL) && prices.contains("$0.2"),
        "{prices}"
    );
    visit(&b, &app, "ops/routes", "#ops-providers", "operator-routes").await;
    visit(&b, &app, "privacy", "#privacy-text", "privacy").await;

    b.resize(390, 844).await;
    visit(&b, &app, "dashboard", "#card-cost", "dashboard-390px-busy").await;
    visit(&b, &app, "keys", "#keys-table", "keys-390px").await;
    b.quit().await;
}

#[tokio::test]
async fn console_shows_a_viewer_what_they_may_see_and_no_controls_they_may_not_use() {
    if let Some(why) = browser::unavailable() {
        skip("console_viewer_in_chromium", &why);
        return;
    }
    let app = TestApp::spawn().await;
    admin::add_member(
        &app.store,
        &Actor::cli(),
        &app.account_id,
        EMAIL,
        Role::Viewer,
        Some(PASSWORD),
    )
    .await
    .unwrap();
    let b = Browser::start(1280, 900).await;
    b.goto(&app.url("/console/")).await;
    b.type_into("#login-form input[name=email]", EMAIL).await;
    b.type_into("#login-form input[name=password]", "wrong password")
        .await;
    b.click("#login-form button[type=submit]").await;
    b.wait_text("#login-error", |t| t.contains("Wrong email or password"))
        .await;
    b.run(
        "document.querySelector('#login-form input[name=password]').value = ''",
        json!([]),
    )
    .await;
    b.type_into("#login-form input[name=password]", PASSWORD)
        .await;
    b.click("#login-form button[type=submit]").await;
    b.find("#card-requests").await;
    // No operator pages in the navigation.
    let nav = b.text_of("nav").await;
    assert!(!nav.contains("All accounts"), "{nav}");

    // Keys are listed, without create or row actions.
    b.goto(&app.url("/console/#/keys")).await;
    b.find("#keys-table").await;
    assert!(b.find_now("#create-key").await.is_none());
    assert!(b.find_now("button[data-action]").await.is_none());
    // Billing and security are for owners; the page says so instead of failing.
    b.goto(&app.url("/console/#/billing")).await;
    b.wait_text("main", |t| t.contains("Only owners")).await;
    assert!(b.find_now(".alert-error").await.is_none());
    b.goto(&app.url("/console/#/security")).await;
    b.wait_text("main", |t| t.contains("Only owners")).await;
    // The account page has no deletion or full export for a viewer.
    b.goto(&app.url("/console/#/account")).await;
    b.find("#members").await;
    assert!(b.find_now("#delete-account").await.is_none());
    assert!(b.find_now("#export-all").await.is_none());

    // Logging out ends the session: the console asks for a login again after a reload.
    b.click("#logout").await;
    b.find("#login-form").await;
    b.goto(&app.url("/console/#/keys")).await;
    b.find("#login-form").await;
    b.quit().await;
}

#[tokio::test]
async fn console_invites_a_member_who_joins_with_the_code_by_consent() {
    if let Some(why) = browser::unavailable() {
        skip("console_invitation_in_chromium", &why);
        return;
    }
    let app = TestApp::spawn().await;
    owner(&app, false).await;
    let b = Browser::start(1280, 800).await;
    b.goto(&app.url("/console/")).await;
    b.type_into("#login-form input[name=email]", EMAIL).await;
    b.type_into("#login-form input[name=password]", PASSWORD)
        .await;
    b.click("#login-form button[type=submit]").await;
    b.find("#card-requests").await;
    b.goto(&app.url("/console/#/account")).await;
    b.find("#members").await;
    // The sole owner is not offered for removal.
    let members = b.text_of("#members").await;
    assert!(members.contains("Last owner"), "{members}");
    b.click("#invite-member").await;
    b.type_into("dialog input[name=email]", "newcomer@example.com")
        .await;
    b.click("dialog button[type=submit]").await;
    let code = b.property("#new-secret", "value").await;
    let code = code.as_str().unwrap().to_owned();
    b.screenshot("invitation-code").await;
    b.click("dialog button[type=submit]").await;
    b.gone("dialog").await;
    b.wait_text("#invitations", |t| t.contains("newcomer@example.com"))
        .await;

    // The newcomer joins with the code and a password of their own.
    b.click("#logout").await;
    b.click("#join-link").await;
    b.type_into("#join-form input[name=code]", &code).await;
    b.type_into("#join-form input[name=password]", "a password of my own")
        .await;
    b.screenshot("join").await;
    b.click("#join-form button[type=submit]").await;
    b.find("#card-requests").await;
    let (status, members) = api(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/accounts/{}/members", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(members.to_string().contains("newcomer@example.com"));
    b.quit().await;
}
