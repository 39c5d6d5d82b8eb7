//! `GET /api/v1/models`: every configured model with the prices in force now and its
//! scheduled changes as exact USD strings, the same prices `/v1/models` shows; routes
//! (providers, upstream names, weights, tiers) only for operators.

use instagen::billing::Price;
use instagen::config::{ModelConfig, PriceChange, RouteConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn price(text: &str) -> Price {
    Price::parse(text).unwrap()
}

#[tokio::test]
async fn models_and_prices_for_any_caller_with_routes_for_operators_only() {
    let app = TestApp::spawn_with(|c| {
        let m = &mut c.models[0];
        m.context_length = Some(32_768);
        m.price_changes = vec![
            PriceChange {
                effective_from: "2020-01-01".to_owned(),
                input_usd_per_mtok: price("1"),
                output_usd_per_mtok: price("2.5"),
                cached_input_usd_per_mtok: None,
                cache_write_usd_per_mtok: None,
                cache_write_1h_usd_per_mtok: None,
                reasoning_usd_per_mtok: None,
            },
            PriceChange {
                effective_from: "2999-01-01T00:00:00Z".to_owned(),
                input_usd_per_mtok: price("3"),
                output_usd_per_mtok: price("4"),
                cached_input_usd_per_mtok: Some(price("0.000000001")),
                cache_write_usd_per_mtok: None,
                cache_write_1h_usd_per_mtok: None,
                reasoning_usd_per_mtok: None,
            },
        ];
        c.models.push(ModelConfig {
            id: "replicated".to_owned(),
            aliases: Vec::new(),
            provider: None,
            routes: vec![
                RouteConfig {
                    provider: "mock".to_owned(),
                    upstream_model: None,
                    weight: 3,
                    priority: 0,
                },
                RouteConfig {
                    provider: "mock".to_owned(),
                    upstream_model: Some("fallback-model".to_owned()),
                    weight: 1,
                    priority: 1,
                },
            ],
            upstream_model: Some("primary-model".to_owned()),
            input_usd_per_mtok: price("0.123456789"),
            output_usd_per_mtok: price("15"),
            cached_input_usd_per_mtok: None,
            cache_write_usd_per_mtok: None,
            cache_write_1h_usd_per_mtok: None,
            reasoning_usd_per_mtok: None,
            context_length: None,
            max_reported_tokens: None,
            default_params: Default::default(),
            price_changes: Vec::new(),
        });
    })
    .await;

    let (status, ops) = api(&app, Method::GET, "/api/v1/models", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{ops}");
    let data = ops["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        data[0],
        json!({
            "id": MODEL,
            "input_usd_per_mtok": "1.000000000",
            "output_usd_per_mtok": "2.500000000",
            "cached_input_usd_per_mtok": "1.000000000",
            "context_length": 32768,
            "routes": [{"provider": "mock", "upstream_model": UPSTREAM_MODEL, "weight": 1, "priority": 0}],
            "price_changes": [
                {"effective_from": "2020-01-01T00:00:00.000Z", "input_usd_per_mtok": "1.000000000",
                 "output_usd_per_mtok": "2.500000000", "cached_input_usd_per_mtok": "1.000000000"},
                {"effective_from": "2999-01-01T00:00:00.000Z", "input_usd_per_mtok": "3.000000000",
                 "output_usd_per_mtok": "4.000000000", "cached_input_usd_per_mtok": "0.000000001"},
            ],
        }),
        "the 2020 change is in force, the 2999 one only scheduled"
    );
    assert_eq!(
        data[1],
        json!({
            "id": "replicated",
            "input_usd_per_mtok": "0.123456789",
            "output_usd_per_mtok": "15.000000000",
            "cached_input_usd_per_mtok": "0.123456789",
            "context_length": null,
            "routes": [
                {"provider": "mock", "upstream_model": "primary-model", "weight": 3, "priority": 0},
                {"provider": "mock", "upstream_model": "fallback-model", "weight": 1, "priority": 1},
            ],
            "price_changes": [],
        })
    );

    // The same prices as the OpenAI-compatible model card.
    let cards: Value = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let card = cards["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == MODEL)
        .unwrap();
    assert_eq!(
        card["pricing"]["input_usd_per_mtok"],
        data[0]["input_usd_per_mtok"]
    );
    assert_eq!(
        card["pricing"]["output_usd_per_mtok"],
        data[0]["output_usd_per_mtok"]
    );

    // A signed-in member and an account token see the prices, never the routes.
    let (status, account) = api(
        &app,
        Method::POST,
        "/api/v1/accounts",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "viewerco", "owner_email": "o@viewerco.example", "owner_password": "correct horse battery"})),
    )
    .await;
    assert_eq!(status, 201);
    let s = login(&app, "o@viewerco.example", "correct horse battery").await;
    let (status, user_view) = as_user(&app, &s, Method::GET, "/api/v1/models", None, false).await;
    assert_eq!(status, 200, "{user_view}");
    let (status, token) = api(
        &app,
        Method::POST,
        &format!(
            "/api/v1/accounts/{}/tokens",
            account["id"].as_str().unwrap()
        ),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "ro", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, token_view) = api(
        &app,
        Method::GET,
        "/api/v1/models",
        Some(token["secret"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 200);
    for view in [&user_view, &token_view] {
        let models = view["data"].as_array().unwrap();
        assert_eq!(models.len(), 2);
        for (m, op) in models.iter().zip(data) {
            assert_eq!(m["routes"], json!([]), "{m}");
            for field in [
                "id",
                "input_usd_per_mtok",
                "output_usd_per_mtok",
                "cached_input_usd_per_mtok",
                "context_length",
                "price_changes",
            ] {
                assert_eq!(m[field], op[field], "{field}");
            }
        }
    }

    // Not signed in: 401.
    let (status, _) = api(&app, Method::GET, "/api/v1/models", None, None).await;
    assert_eq!(status, 401);
}
