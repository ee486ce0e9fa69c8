//! One contract for every usage-store backend: each case runs against SQLite (a temp file)
//! and against PostgreSQL (a fresh database on the server in `LLMUX_TEST_PG_URL`; a SKIP line
//! is printed when it is not set). Both must give identical answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_common;

use store_common::*;

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = TempDir::new();
                    let store = sqlite(&dir).await;
                    cases::$name(&store).await;
                    store.close().await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = pg_url(concat!("postgres::", stringify!($name))) else {
                        return;
                    };
                    let store = postgres(&url).await;
                    cases::$name(&store).await;
                    store.close().await;
                }
            )*
        }
    };
}

contract!(
    empty_store_answers_empty,
    token_usage_groups_filters_and_ranges,
    stats_endpoint_shape_and_rates,
    channel_key_rankings_order_and_window,
    costs_credits_and_ledger_seed,
    token_usage_endpoint_views,
    retention_folds_old_rows_into_daily_totals,
    text_is_stored_verbatim_except_nul,
    inline_attempts_count_as_attempts,
);

mod cases {
    use super::*;
    use llmux::store::endpoints::{self, CreditTerms, PaidKey, TokenUsageQuery};
    use llmux::store::service::load_ledger;
    use llmux::store::{Batch, UsageFilter, UsageRow, UsageStore};
    use llmux::usage::{CostLedger, CreditsView, key_id};
    use serde_json::json;

    const A: &str = "sk-...aaaa#00000000000000a1";
    const B: &str = "sk-...bbbb#00000000000000b2";

    async fn put<S: UsageStore>(
        s: &S,
        requests: Vec<llmux::usage::UsageRecord>,
        attempts: Vec<llmux::usage::AttemptRecord>,
    ) {
        s.insert(&Batch { requests, attempts })
            .await
            .expect("insert");
    }

    fn all() -> UsageFilter {
        UsageFilter::default()
    }

    fn row(key: &str, model: &str, p: i64, c: i64, n: i64) -> UsageRow {
        UsageRow {
            client_key: key.into(),
            model: model.into(),
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
            requests: n,
        }
    }

    pub async fn empty_store_answers_empty<S: UsageStore>(s: &S) {
        s.insert(&Batch::default()).await.expect("empty batch");
        assert_eq!(s.token_usage(&all()).await.unwrap(), vec![]);
        assert_eq!(s.summary(0).await.unwrap(), Default::default());
        assert_eq!(s.key_rankings("p", 0, None).await.unwrap(), vec![]);
        assert_eq!(s.cost_since(A, 0).await.unwrap(), 0.0);
        assert_eq!(s.hourly_costs().await.unwrap(), vec![]);
        assert_eq!(s.credit_grants().await.unwrap(), vec![]);
        assert_eq!(s.purge_before(T0).await.unwrap(), 0);
        let stats = endpoints::stats(s, 24, T0).await.unwrap();
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            json!({
                "time_range": "Last 24 hours",
                "channel_model_success_rates": [],
                "channel_success_rates": [],
                "model_request_counts": [],
                "endpoint_request_counts": [],
                "ip_request_counts": []
            })
        );
    }

    pub async fn token_usage_groups_filters_and_ranges<S: UsageStore>(s: &S) {
        put(
            s,
            vec![
                request(A, "m1", T0, 100, 10),
                request(A, "m1", T0 + HOUR, 50, 5),
                request(A, "m2", T0 + 2 * HOUR, 7, 3),
                request(B, "m1", T0, 1000, 100),
                request(A, "", T0, 9, 9),
            ],
            vec![],
        )
        .await;
        // Grouped per (key, model), ordered; rows without a model are left out.
        assert_eq!(
            s.token_usage(&all()).await.unwrap(),
            vec![
                row(A, "m1", 150, 15, 2),
                row(A, "m2", 7, 3, 1),
                row(B, "m1", 1000, 100, 1)
            ]
        );
        let by_key = UsageFilter {
            client_key: Some(B.into()),
            ..all()
        };
        assert_eq!(
            s.token_usage(&by_key).await.unwrap(),
            vec![row(B, "m1", 1000, 100, 1)]
        );
        let by_model = UsageFilter {
            model: Some("m1".into()),
            ..all()
        };
        assert_eq!(
            s.token_usage(&by_model).await.unwrap(),
            vec![row(A, "m1", 150, 15, 2), row(B, "m1", 1000, 100, 1)]
        );
        // An explicit empty model filter finds the rows without a model.
        let empty_model = UsageFilter {
            model: Some(String::new()),
            ..all()
        };
        assert_eq!(
            s.token_usage(&empty_model).await.unwrap(),
            vec![row(A, "", 9, 9, 1)]
        );
        // Start inclusive, end exclusive.
        let window = UsageFilter {
            start_ms: Some(T0 + HOUR),
            end_ms: Some(T0 + 2 * HOUR),
            ..all()
        };
        assert_eq!(
            s.token_usage(&window).await.unwrap(),
            vec![row(A, "m1", 50, 5, 1)]
        );
        let from = UsageFilter {
            start_ms: Some(T0 + 1),
            ..all()
        };
        assert_eq!(
            s.token_usage(&from).await.unwrap(),
            vec![row(A, "m1", 50, 5, 1), row(A, "m2", 7, 3, 1)]
        );
        let until = UsageFilter {
            end_ms: Some(T0 + 1),
            client_key: Some(A.into()),
            ..all()
        };
        assert_eq!(
            s.token_usage(&until).await.unwrap(),
            vec![row(A, "m1", 100, 10, 1)]
        );
    }

    pub async fn stats_endpoint_shape_and_rates<S: UsageStore>(s: &S) {
        let now = T0 + HOUR;
        let mut no_ip = request(A, "m2", T0 + 2, 1, 1);
        no_ip.client_ip = None;
        no_ip.endpoint = "POST /v1/embeddings".into();
        put(
            s,
            vec![
                request(A, "m1", T0, 1, 1),
                request(B, "m1", T0 + 1, 1, 1),
                request(A, "m1", T0 + 3, 1, 1),
                no_ip,
                // Outside the 24 h window.
                request(A, "old", T0 - 48 * HOUR, 1, 1),
            ],
            vec![
                attempt("openai", "m1", Some("k1"), T0, true),
                attempt("openai", "m1", Some("k1"), T0, true),
                attempt("openai", "m1", Some("k2"), T0, true),
                attempt("openai", "m1", Some("k2"), T0, false),
                attempt("anthropic", "m1", Some("k3"), T0, false),
                attempt("openai", "m2", Some("k1"), T0, true),
                attempt("openai", "m2", Some("k1"), T0, true),
                attempt("azure", "m1", Some("k4"), T0 - 48 * HOUR, false),
            ],
        )
        .await;
        let stats = endpoints::stats(s, 24, now).await.unwrap();
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            json!({
                "time_range": "Last 24 hours",
                "channel_model_success_rates": [
                    {"provider": "openai", "model": "m2", "success_rate": 1.0, "total_requests": 2},
                    {"provider": "openai", "model": "m1", "success_rate": 0.75, "total_requests": 4},
                    {"provider": "anthropic", "model": "m1", "success_rate": 0.0, "total_requests": 1}
                ],
                "channel_success_rates": [
                    {"provider": "openai", "success_rate": 5.0 / 6.0, "total_requests": 6},
                    {"provider": "anthropic", "success_rate": 0.0, "total_requests": 1}
                ],
                "model_request_counts": [
                    {"model": "m1", "count": 3},
                    {"model": "m2", "count": 1}
                ],
                "endpoint_request_counts": [
                    {"endpoint": "POST /v1/chat/completions", "count": 3},
                    {"endpoint": "POST /v1/embeddings", "count": 1}
                ],
                "ip_request_counts": [
                    {"ip": "203.0.113.7", "count": 3},
                    {"ip": null, "count": 1}
                ]
            })
        );
        // A 72 h window sees the old rows too.
        let wide = endpoints::stats(s, 72, now).await.unwrap();
        assert_eq!(wide.channel_success_rates.len(), 3);
        assert_eq!(wide.model_request_counts.len(), 3);
        let e = endpoints::stats(s, 721, now).await.unwrap_err();
        assert_eq!(e.status, 422);
    }

    /// A request answered at its first try keeps its attempt in its own row; stats and key
    /// rankings count it like a row of `llmux_attempts`.
    pub async fn inline_attempts_count_as_attempts<S: UsageStore>(s: &S) {
        let inline = |at_ms: i64, status: Option<u16>| {
            let mut r = request(A, "m1", at_ms, 1, 1);
            r.inline_attempt = Some(llmux::usage::InlineAttempt {
                status,
                latency_ms: 700,
            });
            r
        };
        let fp = "sk-...up01#00000000000000aa";
        put(
            s,
            // Two answered at the first try, one (failed over) whose attempts have rows.
            vec![
                inline(T0, Some(200)),
                inline(T0 + 1, None),
                request(A, "m1", T0 + 2, 1, 1),
            ],
            vec![
                attempt("openai", "m1", Some(fp), T0 + 2, false),
                attempt("openai", "m1", Some("k2"), T0 + 2, true),
            ],
        )
        .await;
        let stats = endpoints::stats(s, 24, T0 + HOUR).await.unwrap();
        assert_eq!(
            serde_json::to_value(&stats.channel_model_success_rates).unwrap(),
            json!([{"provider": "openai", "model": "m1", "success_rate": 0.75, "total_requests": 4}])
        );
        let got = s.key_rankings("openai", T0 - HOUR, None).await.unwrap();
        let order: Vec<(&str, i64, i64)> = got
            .iter()
            .map(|k| (k.key_fingerprint.as_str(), k.success, k.total))
            .collect();
        assert_eq!(order, vec![("k2", 1, 1), (fp, 2, 3)]);
    }

    pub async fn channel_key_rankings_order_and_window<S: UsageStore>(s: &S) {
        let mut atts = vec![];
        for (fp, ok, n) in [
            ("k1", true, 3),
            ("k2", true, 3),
            ("k2", false, 1),
            ("k3", true, 1),
        ] {
            for _ in 0..n {
                atts.push(attempt("p", "m", Some(fp), T0, ok));
            }
        }
        atts.push(attempt("p", "m", None, T0, true)); // no key: not ranked
        atts.push(attempt("other", "m", Some("k9"), T0, true)); // other provider
        atts.push(attempt("p", "m", Some("k4"), T0 + DAY, true)); // at the end bound: excluded
        atts.push(attempt("p", "m", Some("k5"), T0 - DAY, true)); // before the start
        put(s, vec![], atts).await;
        let got = s
            .key_rankings("p", T0 - HOUR, Some(T0 + DAY))
            .await
            .unwrap();
        let order: Vec<(&str, i64, i64)> = got
            .iter()
            .map(|k| (k.key_fingerprint.as_str(), k.success, k.total))
            .collect();
        assert_eq!(order, vec![("k1", 3, 3), ("k3", 1, 1), ("k2", 3, 4)]);

        // The endpoint: explicit range, uni-api's JSON.
        let r = endpoints::channel_key_rankings(
            s,
            "p",
            None,
            Some("2024-05-01T11:00:00Z"),
            Some("2024-05-02T12:00:00Z"),
            T0 + 2 * DAY,
        )
        .await
        .unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "rankings": [
                    {"api_key": "k1", "success_count": 3, "total_requests": 3, "success_rate": 1.0},
                    {"api_key": "k3", "success_count": 1, "total_requests": 1, "success_rate": 1.0},
                    {"api_key": "k2", "success_count": 3, "total_requests": 4, "success_rate": 0.75}
                ],
                "query_details": {
                    "start_datetime": "2024-05-01T11:00:00+00:00",
                    "end_datetime": "2024-05-02T12:00:00+00:00",
                    "api_key_filter": "p",
                    "model_filter": null,
                    "credits": null,
                    "total_cost": null,
                    "balance": null
                }
            })
        );
        // Default window: the last day before `now`.
        let r = endpoints::channel_key_rankings(s, "p", None, None, None, T0 + HOUR)
            .await
            .unwrap();
        assert_eq!(r.rankings.len(), 3);
        let r = endpoints::channel_key_rankings(s, "p", Some(3), None, None, T0 + DAY + 1)
            .await
            .unwrap();
        assert_eq!(r.rankings.len(), 5, "k1, k2, k3, k4 and k5 within 3 days");
    }

    pub async fn costs_credits_and_ledger_seed<S: UsageStore>(s: &S) {
        let mut cheap = request(A, "m1", T0, 1_000_000, 0); // $1 at 1,2
        cheap.price = price(1.0, 2.0);
        let mut dear = request(A, "m2", T0 + 2 * HOUR + 5, 0, 500_000); // $5 at 3,10
        dear.price = price(3.0, 10.0);
        let other = request(B, "m1", T0, 2_000_000, 0); // $2
        put(s, vec![cheap, dear, other], vec![]).await;
        assert!((s.cost_since(A, 0).await.unwrap() - 6.0).abs() < 1e-9);
        assert!((s.cost_since(A, T0 + HOUR).await.unwrap() - 5.0).abs() < 1e-9);
        assert_eq!(s.cost_since("nobody", 0).await.unwrap(), 0.0);

        let mut hours = s.hourly_costs().await.unwrap();
        hours.sort_by(|a, b| (&a.client_key, a.hour).cmp(&(&b.client_key, b.hour)));
        let hours: Vec<(String, i64, f64)> = hours
            .into_iter()
            .map(|h| (h.client_key, h.hour, h.dollars))
            .collect();
        assert_eq!(
            hours,
            vec![
                (A.to_owned(), T0 / HOUR, 1.0),
                (A.to_owned(), T0 / HOUR + 2, 5.0),
                (B.to_owned(), T0 / HOUR, 2.0)
            ]
        );

        assert_eq!(s.add_credits(A, 5.0, T0).await.unwrap(), 5.0);
        assert_eq!(s.add_credits(A, 2.5, T0 + 1).await.unwrap(), 7.5);
        assert_eq!(s.credit_grants().await.unwrap(), vec![(A.to_owned(), 7.5)]);

        // A fresh ledger seeded from the store sees spending and grants.
        let ledger = CostLedger::new();
        load_ledger(s, &ledger).await.unwrap();
        assert_eq!(ledger.spent_since(A, 0), 6.0);
        assert_eq!(ledger.spent_since(A, T0 + HOUR), 5.0);
        assert_eq!(ledger.granted(A), 7.5);

        // /v1/add_credits: persisted, reflected in the ledger, uni-api's answer.
        let paid = PaidKey {
            label: "sk-...aaaa".into(),
            key_id: A.into(),
            credits: 0.0,
            since_ms: T0 - DAY,
        };
        let r = endpoints::add_credits(s, &ledger, &paid, 1.0, T0 + 3 * HOUR)
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "message": "Successfully added 1.0 credits to API key 'sk-...aaaa'.",
                "paid_key": "sk-...aaaa",
                "new_credits": 8.5,
                "enabled": true
            })
        );
        assert_eq!(ledger.granted(A), 8.5);
        assert_eq!(s.credit_grants().await.unwrap(), vec![(A.to_owned(), 8.5)]);
        let e = endpoints::add_credits(s, &ledger, &paid, 0.0, T0)
            .await
            .unwrap_err();
        assert_eq!(e.status, 422);

        // /v1/api_keys_states.
        let states = endpoints::api_keys_states(
            s,
            &ledger,
            &[PaidKey {
                credits: -3.0,
                ..paid
            }],
        )
        .await
        .unwrap();
        assert_eq!(
            serde_json::to_value(&states).unwrap(),
            json!({
                "api_keys_states": {
                    "sk-...aaaa": {
                        "credits": 5.5,
                        "created_at": "2024-04-30T12:00:00+00:00",
                        "all_tokens_info": [
                            {"api_key_prefix": "sk-...aaaa", "model": "m1", "total_prompt_tokens": 1000000,
                             "total_completion_tokens": 0, "total_tokens": 1000000, "request_count": 1},
                            {"api_key_prefix": "sk-...aaaa", "model": "m2", "total_prompt_tokens": 0,
                             "total_completion_tokens": 500000, "total_tokens": 500000, "request_count": 1}
                        ],
                        "total_cost": 6.0,
                        "enabled": false
                    }
                }
            })
        );
    }

    pub async fn token_usage_endpoint_views<S: UsageStore>(s: &S) {
        let secret_a = "sk-client-a-0000000000000000aaaa";
        let secret_b = "sk-client-b-0000000000000000bbbb";
        let (a, b) = (key_id(secret_a), key_id(secret_b));
        let mut ra = request(&a, "m1", T0 - HOUR, 1_000_000, 0); // $1
        ra.price = price(1.0, 2.0);
        put(s, vec![ra, request(&b, "m1", T0 - HOUR, 5, 5)], vec![]).await;
        let ledger = CostLedger::new();
        ledger.add_granted(&a, 0.5);
        let terms = |k: &str| {
            (k == a).then_some(CreditTerms {
                credits: Some(2.0),
                since_ms: T0 - DAY,
            })
        };

        // A non-admin sees only itself, whatever it asks for.
        let q = TokenUsageQuery {
            caller: a.clone(),
            api_key_param: Some(secret_b.into()),
            ..TokenUsageQuery::default()
        };
        let r = endpoints::token_usage(s, &ledger, &q, terms, T0)
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "usage": [
                    {"api_key_prefix": "sk-...aaaa", "model": "m1", "total_prompt_tokens": 1000000,
                     "total_completion_tokens": 0, "total_tokens": 1000000, "request_count": 1}
                ],
                "query_details": {
                    "start_datetime": "2024-04-01T12:00:00+00:00",
                    "end_datetime": "2024-05-01T12:00:00+00:00",
                    "api_key_filter": "self",
                    "model_filter": "all",
                    "credits": "$2.5",
                    "total_cost": "$1.0",
                    "balance": "$1.5"
                }
            })
        );

        // An admin sees everything, without credit details...
        let admin = TokenUsageQuery {
            caller: b.clone(),
            caller_is_admin: true,
            ..TokenUsageQuery::default()
        };
        let r = endpoints::token_usage(s, &ledger, &admin, terms, T0)
            .await
            .unwrap();
        assert_eq!(r.usage.len(), 2);
        assert_eq!(r.query_details.api_key_filter.as_deref(), Some("all"));
        assert_eq!(r.query_details.credits, None);
        assert_eq!(r.query_details.total_cost, None);
        // ...or one key, named by its secret, shown masked; unlimited keys show "$-1".
        let one = TokenUsageQuery {
            api_key_param: Some(secret_b.into()),
            model: Some("m1".into()),
            last_n_days: Some(1),
            ..admin
        };
        let r = endpoints::token_usage(s, &ledger, &one, terms, T0)
            .await
            .unwrap();
        assert_eq!(r.usage.len(), 1);
        assert_eq!(r.usage[0].api_key_prefix, "sk-...bbbb");
        assert_eq!(
            r.query_details.api_key_filter.as_deref(),
            Some("sk-...bbbb")
        );
        assert_eq!(r.query_details.model_filter.as_deref(), Some("m1"));
        assert_eq!(r.query_details.credits.as_deref(), Some("$-1"));
        assert_eq!(r.query_details.total_cost.as_deref(), Some("$1.5e-05"));
        assert_eq!(r.query_details.balance, None);
        let e = endpoints::token_usage(
            s,
            &ledger,
            &TokenUsageQuery {
                last_n_days: Some(1),
                start_datetime: Some("2024-01-01".into()),
                ..TokenUsageQuery::default()
            },
            terms,
            T0,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, 400);
    }

    pub async fn retention_folds_old_rows_into_daily_totals<S: UsageStore>(s: &S) {
        // A day boundary (2024-05-02T00:00Z), so the folded days are whole.
        let cutoff = T0 + DAY / 2;
        // 6000 old rows over three days (more than one purge chunk), 10 recent ones.
        let old: Vec<_> = (0..6000i64)
            .map(|i| {
                let key = if i % 3 == 0 { B } else { A };
                let model = if i % 2 == 0 { "m1" } else { "m2" };
                request(key, model, cutoff - 3 * DAY + i * 40_000, 10, 1)
            })
            .collect();
        let recent: Vec<_> = (0..10i64)
            .map(|i| request(A, "m1", cutoff + i, 10, 1))
            .collect();
        let attempts = vec![
            attempt("p", "m1", Some("k1"), cutoff - DAY, false),
            attempt("p", "m1", Some("k1"), cutoff - 1, false),
            attempt("p", "m1", Some("k1"), cutoff, true),
        ];
        put(s, old, vec![]).await;
        put(s, recent, attempts).await;

        let usage_before = s.token_usage(&all()).await.unwrap();
        let cost_a = s.cost_since(A, 0).await.unwrap();
        let cost_b = s.cost_since(B, 0).await.unwrap();
        let spent_before: f64 = s
            .hourly_costs()
            .await
            .unwrap()
            .iter()
            .map(|h| h.dollars)
            .sum();

        assert_eq!(s.purge_before(cutoff).await.unwrap(), 6000 + 2);
        assert_eq!(
            s.purge_before(cutoff).await.unwrap(),
            0,
            "a second pass finds nothing"
        );

        // Totals over all time survive the purge.
        assert_eq!(s.token_usage(&all()).await.unwrap(), usage_before);
        assert!((s.cost_since(A, 0).await.unwrap() - cost_a).abs() < 1e-9);
        assert!((s.cost_since(B, 0).await.unwrap() - cost_b).abs() < 1e-9);
        let spent_after: f64 = s
            .hourly_costs()
            .await
            .unwrap()
            .iter()
            .map(|h| h.dollars)
            .sum();
        assert!((spent_after - spent_before).abs() < 1e-9);
        // Recent rows are still exact; attempts before the cutoff are gone.
        let recent_only = UsageFilter {
            start_ms: Some(cutoff),
            ..all()
        };
        assert_eq!(
            s.token_usage(&recent_only).await.unwrap(),
            vec![row(A, "m1", 100, 10, 10)]
        );
        let summary = s.summary(0).await.unwrap();
        assert_eq!(summary.channel.len(), 1);
        assert_eq!(
            (summary.channel[0].total, summary.channel[0].success),
            (1, 1)
        );
        // Folded rows are counted by whole UTC day: a range starting mid-day (12:00 two days
        // before the cutoff) includes that whole day.
        let last_day = UsageFilter {
            start_ms: Some(cutoff - DAY - DAY / 2),
            end_ms: Some(cutoff),
            ..all()
        };
        let folded: i64 = s
            .token_usage(&last_day)
            .await
            .unwrap()
            .iter()
            .map(|r| r.requests)
            .sum();
        // Two whole days of rows, one per 40 s (the exact 1.5 days would be 2760).
        assert_eq!(folded, 3840);
    }

    pub async fn text_is_stored_verbatim_except_nul<S: UsageStore>(s: &S) {
        let mut r = request(A, "模型-ü\0x", T0, 1, 1);
        r.request_id = "id-\0-1".into();
        put(
            s,
            vec![r],
            vec![attempt("p\0q", "模型-ü", Some("k"), T0, true)],
        )
        .await;
        let rows = s.token_usage(&all()).await.unwrap();
        assert_eq!(rows, vec![row(A, "模型-üx", 1, 1, 1)]);
        let by_model = UsageFilter {
            model: Some("模型-ü\0x".into()),
            ..all()
        };
        assert_eq!(s.token_usage(&by_model).await.unwrap().len(), 1);
        assert_eq!(s.key_rankings("p\0q", 0, None).await.unwrap().len(), 1);
        let summary = s.summary(0).await.unwrap();
        assert_eq!(summary.channel[0].provider, "pq");
    }
}

/// Reopening keeps the rows and applies each migration once.
#[tokio::test]
async fn sqlite_reopen_keeps_rows_and_migrates_once() {
    use llmux::store::{Batch, SqliteStore, UsageStore};
    let dir = TempDir::new();
    let s = sqlite(&dir).await;
    s.insert(&Batch {
        requests: vec![request("k", "m", T0, 1, 2)],
        attempts: vec![],
    })
    .await
    .unwrap();
    s.close().await;
    let again = SqliteStore::open(&dir.path("stats.db")).await.unwrap();
    assert_eq!(
        again.token_usage(&Default::default()).await.unwrap().len(),
        1
    );
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path("stats.db").display()))
        .await
        .unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM llmux_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2, 3]);
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    pool.close().await;
    again.close().await;
}

/// The idle lane writes to the same file as the pool, each batch atomically, and `close`
/// closes it too (the WAL is checkpointed into the main file once the last connection goes).
#[tokio::test]
async fn sqlite_idle_lane_writes_what_the_pool_reads_and_closes() {
    use llmux::store::{Batch, UsageStore};
    let dir = TempDir::new();
    let s = sqlite(&dir).await;
    assert_eq!(s.has_idle_lane(), cfg!(target_os = "linux"));
    s.insert_idle(&Batch {
        requests: vec![
            request("k", "m", T0, 1, 2),
            request("k", "m2", T0 + 1, 3, 4),
        ],
        attempts: vec![attempt(
            "openai",
            "m",
            Some("sk-...up01#00000000000000aa"),
            T0,
            true,
        )],
    })
    .await
    .unwrap();
    s.insert(&Batch {
        requests: vec![request("k", "m3", T0 + 2, 5, 6)],
        attempts: vec![],
    })
    .await
    .unwrap();
    assert_eq!(s.token_usage(&Default::default()).await.unwrap().len(), 3);
    let ranked = s.key_rankings("openai", 0, None).await.unwrap();
    assert_eq!(ranked.len(), 1, "{ranked:?}");
    s.close().await;
    let wal = dir.path("stats.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the WAL was checkpointed at close"
    );
}

/// The idle lane's SQLite thread runs under SCHED_IDLE (policy 5 in `/proc/<tid>/stat`),
/// the pool's threads do not.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn sqlite_idle_lane_thread_is_under_sched_idle() {
    fn sqlite_threads_by_policy() -> (usize, usize) {
        let mut idle = 0;
        let mut normal = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ...`: fields after the closing parenthesis; policy is field 41.
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if !head.contains("sqlx-sqlite") {
                continue;
            }
            let policy = rest.split_whitespace().nth(41 - 3).unwrap();
            if policy == "5" {
                idle += 1;
            } else {
                normal += 1;
            }
        }
        (idle, normal)
    }
    let dir = TempDir::new();
    let s = sqlite(&dir).await;
    // Other tests of this binary open stores at the same time: count, don't equate.
    let (idle, normal) = sqlite_threads_by_policy();
    assert!(
        idle >= 1,
        "an idle-lane thread: {idle} idle, {normal} normal"
    );
    assert!(
        normal >= 1,
        "the pool's threads stay normal: {idle} idle, {normal} normal"
    );
    s.close().await;
}

/// A database made before migration 2 is brought up to date in place: rows kept, the two
/// unneeded indexes gone.
#[tokio::test]
async fn sqlite_upgrades_a_version_1_database() {
    use llmux::store::{Batch, SqliteStore, UsageStore};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    let dir = TempDir::new();
    let path = dir.path("stats.db");
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::raw_sql(include_str!(
        "../src/store/migrations/sqlite/0001_usage.sql"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE llmux_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
           applied_at_ms BIGINT NOT NULL); \
         INSERT INTO llmux_migrations VALUES (1, 'usage tables', 0); \
         INSERT INTO llmux_requests (at_ms, request_id, client_key, endpoint, model, status, \
           attempts, stream, latency_ms, prompt_tokens, completion_tokens, cached_tokens, \
           reasoning_tokens, tokens_estimated, prompt_price, completion_price, cost) \
         VALUES (1714564800000, 'r1', 'k', 'POST /v1/chat/completions', 'm', 200, 1, 0, 5, \
           3, 4, 0, 0, 0, 0, 0, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let s = SqliteStore::open(&path).await.unwrap();
    s.insert(&Batch {
        requests: vec![request("k", "m", T0, 1, 2)],
        attempts: vec![attempt("p", "m", Some("fp"), T0, true)],
    })
    .await
    .unwrap();
    let usage = s.token_usage(&Default::default()).await.unwrap();
    assert_eq!(
        (usage.len(), usage[0].prompt_tokens, usage[0].requests),
        (1, 4, 2)
    );
    s.close().await;
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(&path))
        .await
        .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'llmux%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "llmux_attempts_at",
            "llmux_credits_key",
            "llmux_requests_at",
            "llmux_requests_key_at"
        ]
    );
    pool.close().await;
}

#[tokio::test]
async fn postgres_reopen_migrates_once() {
    use llmux::store::{Batch, PgStore, UsageStore};
    use sqlx::ConnectOptions;
    let Some(url) = pg_url("postgres_reopen_migrates_once") else {
        return;
    };
    let opts = pg_database(&url).await;
    let s = PgStore::open(opts.clone()).await;
    s.insert(&Batch {
        requests: vec![request("k", "m", T0, 1, 2)],
        attempts: vec![],
    })
    .await
    .unwrap();
    s.close().await;
    // Two gateways starting at once on one database: the advisory lock serialises them.
    let (x, y) = tokio::join!(PgStore::open(opts.clone()), PgStore::open(opts.clone()));
    assert_eq!(x.token_usage(&Default::default()).await.unwrap().len(), 1);
    assert_eq!(y.token_usage(&Default::default()).await.unwrap().len(), 1);
    let mut conn = opts.connect().await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM llmux_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, vec![1, 2, 3]);
}
