//! The configured models as the console's "Models and prices" page shows them: the prices
//! in force now, scheduled price changes, and (for operators only) each model's routes.
//!
//! Read-only and built from the live gateway, so it shows exactly what requests are priced
//! and routed by. Route health belongs to `GET /api/v1/routes`, not here.

use serde::Serialize;

use crate::billing::{Money, Price, Prices};
use crate::gateway::Gateway;

/// One model with its prices as exact decimal USD per million tokens.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ModelView {
    pub id: String,
    /// The prices in force now (the base price, or the latest change already effective).
    pub input_usd_per_mtok: String,
    pub output_usd_per_mtok: String,
    pub cached_input_usd_per_mtok: String,
    pub context_length: Option<u64>,
    /// Empty unless the caller is an operator: providers and upstream names are theirs.
    pub routes: Vec<RouteView>,
    /// Every configured change, oldest first (past ones included, for reference).
    pub price_changes: Vec<PriceChangeView>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RouteView {
    pub provider: String,
    pub upstream_model: String,
    pub weight: u32,
    pub priority: u32,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PriceChangeView {
    /// RFC 3339, UTC.
    pub effective_from: String,
    pub input_usd_per_mtok: String,
    pub output_usd_per_mtok: String,
    pub cached_input_usd_per_mtok: String,
}

/// A price per million tokens as exact USD (nine decimals, like every amount in the API).
fn usd(price: Price) -> String {
    Money::from_nanos(price.nanos_per_mtok()).to_string()
}

fn change_view(effective_from_ms: i64, p: &Prices) -> PriceChangeView {
    PriceChangeView {
        effective_from: crate::time::format_rfc3339(effective_from_ms),
        input_usd_per_mtok: usd(p.input),
        output_usd_per_mtok: usd(p.output),
        cached_input_usd_per_mtok: usd(p.cached_input),
    }
}

/// Every model of `gateway` in config order, priced as at `now_ms`; routes only `with_routes`.
pub fn model_catalog(gateway: &Gateway, with_routes: bool, now_ms: i64) -> Vec<ModelView> {
    gateway
        .models()
        .map(|route| {
            let now = route.prices.at(now_ms);
            let routes = if with_routes {
                route
                    .targets
                    .iter()
                    .map(|t| RouteView {
                        provider: t.provider.name().to_owned(),
                        upstream_model: t.upstream_model.clone(),
                        weight: t.weight,
                        priority: t.priority,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            ModelView {
                id: route.model_id.to_string(),
                input_usd_per_mtok: usd(now.input),
                output_usd_per_mtok: usd(now.output),
                cached_input_usd_per_mtok: usd(now.cached_input),
                context_length: route.context_length,
                routes,
                price_changes: route
                    .prices
                    .changes
                    .iter()
                    .map(|(from, p)| change_view(*from, p))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const CONFIG: &str = r#"
[[providers]]
name = "a"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[providers]]
name = "b"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
[[models]]
id = "m"
upstream_model = "up-m"
input_usd_per_mtok = "0.20"
output_usd_per_mtok = "0.30"
context_length = 8192
routes = [{provider = "a"}, {provider = "b", upstream_model = "other", weight = 3, priority = 1}]
[[models.price_changes]]
effective_from = "2020-01-01"
input_usd_per_mtok = "1"
output_usd_per_mtok = "2"
cached_input_usd_per_mtok = "0.5"
[[models.price_changes]]
effective_from = "2999-01-01T00:00:00Z"
input_usd_per_mtok = "3"
output_usd_per_mtok = "4"
[[models]]
id = "n"
provider = "a"
input_usd_per_mtok = "0.000000001"
output_usd_per_mtok = "15"
"#;

    #[test]
    fn prices_in_force_now_exact_usd_and_routes_only_when_asked() {
        let config = Config::from_parts(CONFIG, "t", &[]).unwrap();
        let gateway = Gateway::from_config(&config).unwrap();
        let now = crate::time::parse_rfc3339("2026-06-01").unwrap();
        let all = model_catalog(&gateway, true, now);
        assert_eq!(all.len(), 2);
        let m = &all[0];
        assert_eq!(m.id, "m");
        // The 2020 change is in force; the 2999 one is only scheduled.
        assert_eq!(
            (
                m.input_usd_per_mtok.as_str(),
                m.output_usd_per_mtok.as_str(),
                m.cached_input_usd_per_mtok.as_str()
            ),
            ("1.000000000", "2.000000000", "0.500000000")
        );
        assert_eq!(m.context_length, Some(8192));
        assert_eq!(
            m.routes,
            vec![
                RouteView {
                    provider: "a".into(),
                    upstream_model: "up-m".into(),
                    weight: 1,
                    priority: 0
                },
                RouteView {
                    provider: "b".into(),
                    upstream_model: "other".into(),
                    weight: 3,
                    priority: 1
                },
            ]
        );
        assert_eq!(m.price_changes.len(), 2);
        assert_eq!(
            m.price_changes[0].effective_from,
            "2020-01-01T00:00:00.000Z"
        );
        assert_eq!(
            m.price_changes[1].cached_input_usd_per_mtok, "3.000000000",
            "cached input defaults to the input price"
        );
        let n = &all[1];
        assert_eq!(
            (
                n.input_usd_per_mtok.as_str(),
                n.output_usd_per_mtok.as_str()
            ),
            ("0.000000001", "15.000000000")
        );
        assert_eq!(n.cached_input_usd_per_mtok, "0.000000001");
        assert_eq!(n.context_length, None);
        assert!(n.price_changes.is_empty());

        // Before any change: the base prices.
        let before = model_catalog(&gateway, false, 0);
        assert_eq!(before[0].input_usd_per_mtok, "0.200000000");
        assert!(before.iter().all(|m| m.routes.is_empty()));
    }
}
