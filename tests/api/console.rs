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

/// An exact amount as the console shows it: whole cents with two places ("$5.00"),
/// anything finer with all nine ("$99.999498210"), thousands separated.
fn console_usd(exact: &str) -> String {
    let (neg, digits) = match exact.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, exact),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = format!("{frac:0<9}");
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let shown = if frac[2..].chars().all(|c| c == '0') {
        &frac[..2]
    } else {
        &frac[..]
    };
    format!("{}${grouped}.{shown}", if neg { "−" } else { "" })
}

#[test]
fn console_usd_shows_cents_or_every_nano_dollar() {
    assert_eq!(console_usd("99.999498210"), "$99.999498210");
    assert_eq!(console_usd("1234.500000000"), "$1,234.50");
    assert_eq!(console_usd("-0.000012340"), "−$0.000012340");
}

/// The text of axe-core's `axe.min.js` (installed by `npm ci --prefix tests/console`); where
/// npm could not install it the audit is reported as skipped, and under CI it must be there.
fn axe_source() -> Option<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/console/node_modules/axe-core/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "axe-core is missing under CI ({}): {e}",
                path.display()
            );
            skip(
                "console_accessibility_audit",
                "axe-core is not installed (npm ci --prefix tests/console)",
            );
            None
        }
    }
}

/// The signed-out console asks whether there is a session; that 401 is the answer it expects.
const SIGNED_OUT_PROBE: (&str, u16) = ("/api/v1/session", 401);

/// The page as it stands: nothing in the browser log but the failed loads `expected`, and
/// no WCAG 2.1 A/AA violation axe-core finds.
async fn audit(b: &Browser, at: &str, expected: &[(&str, u16)]) {
    b.assert_clean_console(at, expected).await;
    if let Some(axe) = axe_source() {
        let found = b.accessibility_violations(&axe).await;
        assert!(
            found.is_empty(),
            "{at}: accessibility violations:\n{}",
            found.join("\n")
        );
    }
}

/// Logs the console's user in from the login page and waits for the dashboard.
async fn log_in(b: &Browser) {
    b.type_into("#login-form input[name=email]", EMAIL).await;
    b.type_into("#login-form input[name=password]", PASSWORD)
        .await;
    b.click("#login-form button[type=submit]").await;
    b.find("#card-requests").await;
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
    log_in(&b).await;
    // A first visit is asked to read the policy; nothing "has changed" for a newcomer.
    let notice = b.text_of("#privacy-notice").await;
    assert!(
        notice.contains("Please read our privacy policy") && !notice.contains("changed"),
        "{notice}"
    );
    b.gone(".loading").await;
    audit(&b, "first dashboard", &[SIGNED_OUT_PROBE]).await;
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
    // Ready-made setups for the tools, filled with this console's address and the new key.
    let origin = app.url("");
    let curl = b.text_of("dialog .tab-panel[data-tool=curl]").await;
    assert!(
        curl.contains(&secret) && curl.contains(&format!("{origin}/v1/chat/completions")),
        "{curl}"
    );
    b.click("dialog .tab[data-tool=claude]").await;
    let claude = b.text_of("dialog .tab-panel[data-tool=claude]").await;
    assert!(
        claude.contains(&format!("ANTHROPIC_BASE_URL=\"{origin}\""))
            && claude.contains(&format!("ANTHROPIC_AUTH_TOKEN=\"{secret}\"")),
        "{claude}"
    );
    b.click("dialog .tab[data-tool=codex]").await;
    let codex = b.text_of("dialog .tab-panel[data-tool=codex]").await;
    assert!(
        codex.contains(&format!("base_url = \"{origin}/v1\"")) && codex.contains(&secret),
        "{codex}"
    );
    audit(&b, "new key dialog", &[]).await;
    b.screenshot("key-created-connect").await;
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
    // A refresh the loop asked for may still redraw the page (the same figures): each read
    // waits for its element to be drawn, then checks what it shows.
    let drawn = |t: &str| !t.is_empty();
    assert_eq!(
        b.wait_text("#card-cost .card-value", drawn).await,
        console_usd(&Money::from_nanos(cost).to_string())
    );
    let input = b.wait_text("#card-input .card-value", drawn).await;
    assert_eq!(input, usage["prompt_tokens"].as_u64().unwrap().to_string());
    let by_key = b.wait_text("#by-key", drawn).await;
    assert!(by_key.contains("browser-key"), "{by_key}");
    let by_model = b.wait_text("#by-model", drawn).await;
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
        if name == "notebook" {
            // A tightly held key: its limits must show in the list.
            spec.limits.rpm = Some(1);
            spec.limits.spend_limit_usd = Some("5".into());
            spec.limits.spend_limit_period = Some("month".into());
            spec.allowed_models = Some(vec![MODEL.into()]);
            spec.allowed_regions = Some(vec!["eu".into()]);
            spec.expires_ms = Some(instagen::time::now_ms() + 30 * 86_400_000);
        }
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
                request_id: format!("req_seed_{n:07}").into(),
                account_id: app.account_id.clone().into(),
                key_id: keys[1 + (n % 5).min(2) as usize].clone().into(),
                endpoint: [
                    "chat.completions",
                    "chat.completions",
                    "responses",
                    "messages",
                    "embeddings",
                ][(n % 5) as usize]
                    .into(),
                model: Some(model.into()),
                started_ms: started + (i as i64 * 97_000) % hour,
                finished_ms: started + 900,
                status: if n.is_multiple_of(97) { 502 } else { 200 },
                input_tokens: input,
                cached_input_tokens: input / 4,
                cache_write_5m_tokens: if n.is_multiple_of(11) { 120 } else { 0 },
                output_tokens: output,
                reasoning_tokens: if model == "qwen3-235b" { output / 2 } else { 0 },
                cost_nanos: cost,
                latency_us: 850_000,
                attempts: 1,
                ..Default::default()
            });
        }
    }
    // A request of each model in this calendar month, however early in it the test runs:
    // the billing page shows the month's spend by model (in its first hour, the week's
    // curve above lies wholly in the month before).
    let this_month = (now - 60_000).max(instagen::time::month_start_ms(now));
    for (i, (model, ..)) in models.iter().enumerate() {
        records.push(instagen::usage::UsageRecord {
            request_id: format!("req_seed_month_{i}").into(),
            account_id: app.account_id.clone().into(),
            key_id: keys[1 + i].clone().into(),
            endpoint: "chat.completions".into(),
            model: Some((*model).into()),
            started_ms: this_month,
            finished_ms: this_month + 900,
            status: 200,
            input_tokens: 1_000,
            cached_input_tokens: 250,
            cache_write_5m_tokens: 120,
            output_tokens: 400,
            reasoning_tokens: 200,
            cost_nanos: 250_000,
            latency_us: 850_000,
            attempts: 1,
            ..Default::default()
        });
    }
    // Requests refused before any model served them (an unknown model, say).
    for i in 0..3 {
        records.push(instagen::usage::UsageRecord {
            request_id: format!("req_seed_refused_{i}").into(),
            account_id: app.account_id.clone().into(),
            key_id: keys[1].clone().into(),
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

/// Visits `hash`, waits for `ready`, checks no page error shows, audits the page (browser
/// log, accessibility) and saves a screenshot.
async fn visit(b: &Browser, app: &TestApp, hash: &str, ready: &str, shot: &str) {
    b.goto(&app.url(&format!("/console/#/{hash}"))).await;
    b.find(ready).await;
    b.gone(".loading").await;
    assert!(
        b.find_now(".alert-error").await.is_none(),
        "{hash}: {}",
        b.text_of(".alert-error").await
    );
    audit(b, shot, &[]).await;
    b.screenshot(shot).await;
}

/// The number of bars in the dashboard's chart and its x-axis labels.
async fn chart(b: &Browser) -> (u64, Vec<String>) {
    let v = b
        .run(
            "return [document.querySelectorAll('#usage-chart g.bar').length,
                     [...document.querySelectorAll('#usage-chart text.axis')].map(t => t.textContent)]",
            json!([]),
        )
        .await;
    let labels = v[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (v[0].as_u64().unwrap(), labels)
}

/// Whether every element matching `css` lies wholly inside the viewport.
async fn all_in_view(b: &Browser, css: &str) -> bool {
    b.run(
        "const els = [...document.querySelectorAll(arguments[0])];
         return els.length > 0 && els.every(e => { const r = e.getBoundingClientRect();
           return r.width > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight; });",
        json!([css]),
    )
    .await
        == Value::Bool(true)
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
    let b = Browser::start(1280, 800).await;
    b.goto(&app.url("/console/")).await;
    b.find("#login-form").await;
    audit(&b, "login", &[SIGNED_OUT_PROBE]).await;
    b.screenshot("login").await;
    log_in(&b).await;

    // The privacy page carries no notice over the policy; reading it there acknowledges it.
    b.find("#privacy-notice").await;
    visit(&b, &app, "privacy", "#privacy-text", "privacy").await;
    assert!(b.find_now("#privacy-notice").await.is_none());
    b.click("#privacy-ack-page").await;
    b.wait_text("#privacy-text + .button-row, main", |t| {
        t.contains("you have read this version")
    })
    .await;
    b.goto(&app.url("/console/#/dashboard")).await;
    b.find("#card-requests").await;
    assert!(b.find_now("#privacy-notice").await.is_none());

    // A week of traffic: one bar a day, labelled with dates; every token kind; by endpoint.
    b.click(".segmented button[data-value='7d']").await;
    b.wait_text("#card-requests .card-value", |t| t.contains(','))
        .await;
    b.find("#by-endpoint").await;
    b.gone(".loading").await;
    let (bars, labels) = chart(&b).await;
    assert_eq!(bars, 7, "{labels:?}");
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let dated = |l: &String| months.iter().any(|m| l.starts_with(m));
    assert!(
        labels.iter().filter(|l| dated(l)).count() >= 4,
        "{labels:?}"
    );
    for card in ["#card-cache-reads", "#card-cache-writes", "#card-reasoning"] {
        let v = b.text_of(&format!("{card} .card-value")).await;
        assert!(v != "0" && !v.is_empty(), "{card}: {v}");
    }
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
    let endpoints = b.text_of("#by-endpoint").await;
    for e in [
        "Chat completions",
        "Responses",
        "Messages (Anthropic)",
        "Embeddings",
    ] {
        assert!(endpoints.contains(e), "{e}: {endpoints}");
    }
    b.click(".panel-head .segmented button[data-value='tokens']")
        .await;
    b.find(".legend").await;
    audit(&b, "dashboard 7 days", &[]).await;
    b.screenshot("dashboard-7d").await;
    // A day by the hour, with the date where the day turns; a month by the day.
    b.click(".segmented button[data-value='24h']").await;
    b.wait_text(".panel-head h2", |t| t.contains("per hour"))
        .await;
    let (bars, labels) = chart(&b).await;
    assert!((24..=25).contains(&bars), "{bars} {labels:?}");
    assert!(labels.iter().any(dated), "{labels:?}");
    assert!(labels.iter().any(|l| l.ends_with(":00")), "{labels:?}");
    b.screenshot("dashboard-24h").await;
    b.click(".segmented button[data-value='30d']").await;
    b.wait_text(".panel-head h2", |t| t.contains("per day"))
        .await;
    b.gone(".loading").await;
    let (bars, labels) = chart(&b).await;
    assert_eq!(bars, 30, "{labels:?}");
    b.screenshot("dashboard-30d").await;
    // A custom range of ten whole days, by the day.
    let day = |ago: i64| {
        instagen::time::format_rfc3339(instagen::time::now_ms() - ago * 86_400_000)[..10].to_owned()
    };
    b.click(".segmented button[data-value='custom']").await;
    b.find("#range-from").await;
    b.run(
        "document.querySelector('#range-from').value = arguments[0];
         document.querySelector('#range-to').value = arguments[1];
         document.querySelector('.custom-range button[type=submit]').click();",
        json!([day(9), day(0)]),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        b.gone(".loading").await;
        if chart(&b).await.0 == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            chart(&b).await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    audit(&b, "dashboard custom range", &[]).await;
    b.screenshot("dashboard-custom").await;

    // Keys show their limits; the create dialog keeps its buttons in view at 1280×800.
    visit(&b, &app, "keys", "#keys-table", "keys-busy").await;
    let row = b
        .run(
            "return [...document.querySelectorAll('#keys-table tbody tr')].find(r => r.textContent.includes('notebook')).textContent",
            json!([]),
        )
        .await;
    let row = row.as_str().unwrap();
    for shown in [
        "1 req/min",
        "$5.00 per month",
        "models: ",
        "regions: eu",
        "expires ",
    ] {
        assert!(row.contains(shown), "{shown}: {row}");
    }
    b.click("#create-key").await;
    b.find("dialog input[name=name]").await;
    assert!(
        all_in_view(&b, "dialog .dialog-actions button").await,
        "the dialog's buttons are cut off"
    );
    audit(&b, "create key dialog", &[]).await;
    b.screenshot("keys-create-dialog").await;
    b.click("dialog button[type=button]").await;
    b.gone("dialog").await;

    // A key's own page: its spend against its limit, its recent requests, each one's record.
    b.run(
        "[...document.querySelectorAll('#keys-table a')].find(a => a.textContent === 'notebook').click()",
        json!([]),
    )
    .await;
    b.find("#key-requests").await;
    b.gone(".loading").await;
    let limit = b.text_of("#card-spend-limit").await;
    assert!(
        limit.contains("this month") && limit.contains("of $5.00") && limit.contains("left"),
        "{limit}"
    );
    let facts = b.text_of("#key-facts").await;
    assert!(facts.contains("eu") && facts.contains(MODEL), "{facts}");
    audit(&b, "key page", &[]).await;
    b.screenshot("key-page").await;
    b.click("#key-requests button[data-request]").await;
    // The record is fetched when the row is opened: wait for it.
    let record = b
        .wait_text("#request-facts", |t| t.contains("req_seed_"))
        .await;
    assert!(record.contains("Cache reads"), "{record}");
    audit(&b, "request details", &[]).await;
    b.screenshot("key-request-details").await;
    b.click("dialog button[type=submit]").await;
    b.gone("dialog").await;

    // Billing: the balance exact to the nano-dollar, as the API gives it.
    visit(&b, &app, "billing", "#ledger", "billing").await;
    let (_, bill) = api(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/accounts/{}/billing", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    let exact = bill["balance_usd"].as_str().unwrap();
    assert_eq!(
        b.text_of("#card-balance .card-value").await,
        console_usd(exact),
        "{exact}"
    );
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
    // Security names keys and people, the raw id on hover.
    visit(&b, &app, "security", "#audit-log", "security").await;
    let audit_log = b.text_of("#audit-log").await;
    assert!(audit_log.contains("key “backend-prod”"), "{audit_log}");
    assert!(
        audit_log.contains("alert “balance below”") && audit_log.contains("ledger entry #1"),
        "{audit_log}"
    );
    assert!(!audit_log.contains(&app.key_id), "{audit_log}");
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

    // A phone: every page in the navigation, who is signed in in the header.
    b.resize(390, 844).await;
    visit(&b, &app, "dashboard", "#card-cost", "dashboard-390px-busy").await;
    assert!(
        all_in_view(&b, "nav .nav-item").await,
        "the phone navigation hides pages"
    );
    let nav = b.text_of("nav").await;
    for page in [
        "Dashboard",
        "Access keys",
        "Billing",
        "Alerts",
        "Security",
        "Account",
        "Privacy",
        "All accounts",
    ] {
        assert!(nav.contains(page), "{page}: {nav}");
    }
    assert!(all_in_view(&b, "#who").await, "who is signed in is hidden");
    assert_eq!(b.text_of("#who").await, EMAIL);
    visit(&b, &app, "keys", "#keys-table", "keys-390px").await;
    b.click("#create-key").await;
    b.find("dialog input[name=name]").await;
    assert!(all_in_view(&b, "dialog .dialog-actions button").await);
    b.screenshot("keys-create-dialog-390px").await;
    b.click("dialog button[type=button]").await;
    b.gone("dialog").await;
    for (hash, ready, shot) in [
        ("billing", "#ledger", "billing-390px"),
        ("security", "#audit-log", "security-390px"),
        ("alerts", "#deliveries-table", "alerts-390px"),
        ("account", "#members", "account-390px"),
        ("privacy", "#privacy-text", "privacy-390px"),
    ] {
        visit(&b, &app, hash, ready, shot).await;
    }
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
    b.gone(".loading").await;
    // The failed login's 401 is the one error the log may hold (the same as the probe's).
    audit(&b, "viewer dashboard", &[SIGNED_OUT_PROBE]).await;
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
    // Nothing the viewer was shown asked for what a viewer may not read.
    audit(&b, "viewer pages", &[]).await;

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
    log_in(&b).await;
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

/// What a mouse does on the keys page a keyboard does too: skip to the content, reach
/// "Create key", fill and submit the dialog, switch the snippet tabs with the arrow keys,
/// close with Escape — with a visible focus ring on each control on the way.
#[tokio::test]
async fn console_is_operable_by_keyboard_alone_with_a_visible_focus() {
    use crate::browser::{ARROW_RIGHT, ENTER, ESCAPE};
    if let Some(why) = browser::unavailable() {
        skip("console_keyboard_in_chromium", &why);
        return;
    }
    let app = TestApp::spawn().await;
    owner(&app, false).await;
    let b = Browser::start(1280, 800).await;
    b.goto(&app.url("/console/")).await;
    b.type_into("#login-form input[name=email]", EMAIL).await;
    b.type_into("#login-form input[name=password]", PASSWORD)
        .await;
    b.press(ENTER).await;
    b.find("#card-requests").await;
    b.click("#privacy-ack").await;
    b.goto(&app.url("/console/#/keys")).await;
    b.find("#keys-table").await;
    b.gone(".loading").await;

    // A page moves the focus to its content. The skip link (first in the Tab order) does the
    // same on Enter, without changing the route.
    let focused = b.run("return document.activeElement.id", json!([])).await;
    assert_eq!(focused, "main");
    let first = b
        .run(
            "return document.querySelector('a[href], button, input, select, textarea').className",
            json!([]),
        )
        .await;
    assert_eq!(first, "skip");
    b.run("document.querySelector('.skip').focus()", json!([]))
        .await;
    b.press(ENTER).await;
    let at = b
        .run(
            "return [document.activeElement.id, location.hash]",
            json!([]),
        )
        .await;
    assert_eq!(at, json!(["main", "#/keys"]));

    // Create a key without the mouse.
    assert!(
        b.tab_to("#create-key", 40).await,
        "Create key is out of the Tab order"
    );
    assert!(b.focus_visible().await, "Create key shows no focus");
    b.press(ENTER).await;
    b.find("dialog input[name=name]").await;
    let focused = b.run("return document.activeElement.name", json!([])).await;
    assert_eq!(
        focused, "name",
        "the dialog puts the focus in its first field"
    );
    b.type_into("dialog input[name=name]", "keyboard-key").await;
    b.press(ENTER).await;
    b.find("#new-secret").await;

    // The snippet tabs: Tab reaches the selected one, the arrow keys move along.
    assert!(b.tab_to("dialog .tab[aria-selected=true]", 20).await);
    assert!(b.focus_visible().await, "the snippet tab shows no focus");
    b.press(ARROW_RIGHT).await;
    let tab = b
        .run(
            "return [document.activeElement.dataset.tool, document.querySelector('dialog .tab-panel[data-tool=python]').hidden]",
            json!([]),
        )
        .await;
    assert_eq!(tab, json!(["python", false]));
    audit(&b, "keyboard dialog", &[SIGNED_OUT_PROBE]).await;
    b.press(ESCAPE).await;
    b.gone("dialog").await;
    b.wait_text("#keys-table", |t| t.contains("keyboard-key"))
        .await;
    b.quit().await;
}
