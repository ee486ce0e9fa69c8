//! Loading uni-api's `api.yaml`: YAML with positions ([`yaml`]), `${VAR}` interpolation
//! ([`interpolate`]), typed validation ([`parse`]) into [`schema::Config`], and diagnostics that
//! name `file:line:col: key.path` ([`diag`]).

pub mod diag;
mod interpolate;
mod parse;
pub mod schema;
mod yaml;

pub use diag::{Diagnostic, Severity};

/// A successfully parsed config and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: schema::Config,
    pub warnings: Vec<Diagnostic>,
}

/// Parse and validate one api.yaml text. `source` is the file name or URL shown in diagnostics.
/// `env` resolves `${VAR}` / `${VAR:-default}`.
///
/// # Errors
/// Every error found (not just the first), sorted by position, with the warnings among them.
pub fn parse_config(
    text: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let mut sink = diag::Sink::new(source);
    let Some(mut root) = yaml::load(text, &mut sink) else {
        return Err(sink.into_sorted());
    };
    interpolate::expand_tree(&mut root, "", env, &mut sink);
    let config = parse::config(&root, &mut sink);
    if sink.has_errors() {
        Err(sink.into_sorted())
    } else {
        Ok(Loaded {
            config,
            warnings: sink.into_sorted(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::schema::*;
    use super::*;

    const README: &str = include_str!("../../tests/fixtures/config/uni-api-readme.yaml");
    const MINIMAL: &str = include_str!("../../tests/fixtures/config/minimal.yaml");
    const BROKEN: &str = include_str!("../../tests/fixtures/config/broken.yaml");

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "KEY" => Some("sk-from-env".into()),
            "COLON" => Some("a: b".into()),
            _ => None,
        }
    }

    fn ok(text: &str) -> Loaded {
        match parse_config(text, "api.yaml", &env) {
            Ok(l) => l,
            Err(e) => panic!("unexpected errors:\n{}", lines(&e).join("\n")),
        }
    }

    fn lines(diags: &[Diagnostic]) -> Vec<String> {
        diags.iter().map(ToString::to_string).collect()
    }

    fn warnings(text: &str) -> Vec<String> {
        lines(&ok(text).warnings)
    }

    /// All diagnostics (errors and warnings) of a text that must fail.
    fn all(text: &str) -> Vec<String> {
        match parse_config(text, "api.yaml", &env) {
            Ok(l) => panic!(
                "expected errors, got a config; warnings: {:?}",
                lines(&l.warnings)
            ),
            Err(e) => lines(&e),
        }
    }

    fn errors(text: &str) -> Vec<String> {
        match parse_config(text, "api.yaml", &env) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => lines(
                &e.into_iter()
                    .filter(Diagnostic::is_error)
                    .collect::<Vec<_>>(),
            ),
        }
    }

    /// 1-based line and column (in chars) of the `n`th occurrence of `needle`.
    fn at_nth(text: &str, needle: &str, n: usize) -> (usize, usize) {
        let byte = text
            .match_indices(needle)
            .nth(n)
            .unwrap_or_else(|| panic!("{needle:?} not in text"))
            .0;
        let before = &text[..byte];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, col)
    }

    fn at(text: &str, needle: &str) -> (usize, usize) {
        at_nth(text, needle, 0)
    }

    /// `api.yaml:L:C: ` for the first occurrence of `needle`.
    fn loc(text: &str, needle: &str) -> String {
        let (l, c) = at(text, needle);
        format!("api.yaml:{l}:{c}: ")
    }

    /// Like [`loc`], `offset` chars into the match.
    fn loc_at(text: &str, needle: &str, offset: usize) -> String {
        let (l, c) = at(text, needle);
        format!("api.yaml:{l}:{}: ", c + offset)
    }

    const KEYS: &str = "api_keys:\n  - api: sk-client\n";

    fn with_keys(providers: &str) -> String {
        format!("{providers}{KEYS}")
    }

    fn provider_named<'a>(cfg: &'a Config, name: &str) -> &'a ProviderConfig {
        cfg.providers
            .iter()
            .find(|p| p.provider == name)
            .unwrap_or_else(|| panic!("no provider {name}"))
    }

    fn rl(count: u64, secs: u64) -> RateLimit {
        RateLimit {
            count,
            period: RatePeriod::Window(secs),
        }
    }

    // -----------------------------------------------------------------------------------------
    // fixtures

    #[test]
    fn readme_example_parses_without_errors_or_warnings() {
        let loaded = ok(README);
        assert_eq!(lines(&loaded.warnings), Vec::<String>::new());
        let cfg = loaded.config;
        assert_eq!(cfg.providers.len(), 11);
        assert_eq!(cfg.api_keys.len(), 3);

        let first = &cfg.providers[0];
        assert_eq!(first.provider, "provider_name");
        assert_eq!(first.api, ["sk-YgS6GTi0b4bEabc4C"]);
        let (l, c) = at(README, "provider: provider_name");
        assert_eq!(
            first.pos,
            Pos {
                line: l as u32,
                col: c as u32
            }
        );

        let anthropic = provider_named(&cfg, "anthropic");
        assert_eq!(
            anthropic.api,
            ["sk-ant-api03-bNnAOJyA-xQw_twAA", "sk-ant-api02-bNnxxxx"]
        );
        let models = anthropic.model.as_ref().unwrap();
        assert_eq!(models.len(), 2);
        assert_eq!(models[0].upstream, "claude-sonnet-4-5-20250929");
        assert_eq!(models[0].alias, "claude-sonnet-4-5");
        assert_eq!(models[1].alias, "claude-sonnet-4-5-think");
        assert!(anthropic.tools);
        let overrides = anthropic
            .preferences
            .post_body_parameter_overrides
            .as_ref()
            .unwrap();
        assert_eq!(
            overrides["claude-sonnet-4-5-think"]["tools"][1],
            json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 5})
        );

        let gemini = provider_named(&cfg, "gemini");
        assert_eq!(gemini.api.len(), 3);
        assert_eq!(
            gemini.preferences.api_key_rate_limit,
            Some(RateLimitSpec::All(vec![rl(15, 60)]))
        );
        assert_eq!(gemini.preferences.api_key_cooldown_period, Some(60.0));
        assert_eq!(
            gemini.preferences.api_key_schedule_algorithm,
            Some(KeySchedule::RoundRobin)
        );
        assert_eq!(
            gemini.preferences.model_timeout,
            Some(PerModel::Map(vec![
                ("gemini-2.5-pro".into(), 500.0),
                ("gemini-2.5-flash".into(), 500.0),
                ("default".into(), 10.0),
            ]))
        );
        assert_eq!(
            gemini.preferences.proxy.as_deref(),
            Some("socks5://[username]:[password]@[ip]:[port]")
        );
        assert_eq!(
            gemini.preferences.headers,
            [
                ("Custom-Header-1".to_owned(), "Value-1".to_owned()),
                ("Custom-Header-2".to_owned(), "Value-2".to_owned())
            ]
        );
        let gm = gemini.model.as_ref().unwrap();
        assert!(gm.iter().any(|m| m.upstream == "gemini-2.5-flash"
            && m.alias == "gemini-2.5-flash-think-24576-search"));

        let vertex = provider_named(&cfg, "vertex");
        assert_eq!(
            vertex.base_url.as_deref(),
            Some("https://aiplatform.googleapis.com/")
        );
        assert_eq!(vertex.project_id, ["gen-lang-client-xxxxxxxxxxxxxx"]);
        assert!(vertex.api.is_empty());
        assert_eq!(vertex.notes.as_deref(), Some("https://xxxxx.com/"));
        let thinking = &vertex
            .preferences
            .post_body_parameter_overrides
            .as_ref()
            .unwrap()["gemini-2.5-flash"]["generationConfig"];
        // `True` is a YAML 1.2 core boolean, numbers stay integers
        assert_eq!(
            *thinking,
            json!({"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 24576},
                   "maxOutputTokens": 65535})
        );

        let cloudflare = provider_named(&cfg, "cloudflare");
        assert_eq!(
            cloudflare.base_url.as_deref(),
            Some("https://api.cloudflare.com/")
        );
        let cm = cloudflare.model.as_ref().unwrap();
        assert_eq!(cm[0].upstream, "@cf/meta/llama-3.1-8b-instruct");
        assert_eq!(cm[0].alias, "llama-3.1-8b");
        assert_eq!(cm[1].alias, "@cf/meta/llama-3.1-8b-instruct");

        let azure = provider_named(&cfg, "azure");
        assert_eq!(azure.preferences.cooldown_period, Some(0.0));
        assert_eq!(
            azure
                .preferences
                .post_body_parameter_overrides
                .as_ref()
                .unwrap()["stream_options"],
            json!({"include_usage": true})
        );

        let aws = provider_named(&cfg, "aws");
        assert_eq!(aws.aws_access_key.as_deref(), Some("xxxxxxxx"));
        let am = aws.model.as_ref().unwrap();
        assert_eq!(am[0].upstream, "anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(am[0].alias, "claude-sonnet-4-5");

        let express = provider_named(&cfg, "vertex-express");
        assert_eq!(express.project_id, ["xxx", "xxx"]);
        assert_eq!(express.api, ["xx.xxx", "xx.xxx"]);

        let other = provider_named(&cfg, "other-provider");
        assert_eq!(other.engine.as_deref(), Some("openrouter"));
        assert!(!other.tools);

        let k0 = &cfg.api_keys[0];
        assert_eq!(k0.role.as_deref(), Some("admin"));
        let rules: Vec<&str> = k0.model.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(rules, ["gpt-5.2", "claude-sonnet-4-5", "gemini/*"]);

        let k1 = &cfg.api_keys[1];
        assert_eq!(k1.model.len(), 4);
        assert_eq!(k1.model[1].rule, "<anthropic/claude-sonnet-4-5>");
        assert_eq!(
            k1.preferences.scheduling_algorithm,
            Some(ChannelSchedule::FixedPriority)
        );
        assert_eq!(k1.preferences.auto_retry, AutoRetry::Enabled(true));
        assert_eq!(
            k1.preferences.rate_limit,
            Some(RateLimitSpec::All(vec![rl(15, 60)]))
        );
        assert!(k1.preferences.enable_moderation);

        let k2 = &cfg.api_keys[2];
        let weighted: Vec<(&str, Option<u32>)> = k2
            .model
            .iter()
            .map(|r| (r.rule.as_str(), r.weight))
            .collect();
        assert_eq!(
            weighted,
            [
                ("gcp1/*", Some(5)),
                ("gcp2/*", Some(3)),
                ("gcp3/*", Some(2))
            ]
        );
        let (l, c) = at(README, "gcp2/*: 3");
        assert_eq!(
            k2.model[1].pos,
            Pos {
                line: l as u32,
                col: c as u32
            }
        );
        assert_eq!(
            k2.preferences.scheduling_algorithm,
            Some(ChannelSchedule::WeightedRoundRobin)
        );
        assert_eq!(k2.preferences.credits, Some(10.0));
        assert_eq!(
            k2.preferences.created_at.as_deref(),
            Some("2024-01-01T00:00:00+08:00")
        );

        let g = &cfg.preferences;
        assert_eq!(g.cooldown_period, Some(300.0));
        assert_eq!(
            g.rate_limit,
            Some(RateLimitSpec::All(vec![rl(999_999, 60)]))
        );
        assert_eq!(g.error_triggers.len(), 2);
        assert_eq!(
            g.keepalive_interval,
            Some(PerModel::Map(vec![("gemini-2.5-pro".into(), 50.0)]))
        );
        let price = |i, o| Price {
            input_per_million: i,
            output_per_million: o,
        };
        assert_eq!(
            g.model_price,
            [
                ("gpt-5.2".to_owned(), price(1.0, 2.0)),
                ("claude-sonnet-4-5".to_owned(), price(0.12, 0.48)),
                ("default".to_owned(), price(1.0, 2.0)),
            ]
        );
        let Some(PerModel::Map(timeouts)) = &g.model_timeout else {
            panic!("global model_timeout")
        };
        let order: Vec<&str> = timeouts.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            order,
            [
                "gpt-5.2",
                "claude-sonnet-4-5",
                "default",
                "gemini-3-pro",
                "gemini-3-pro-image"
            ]
        );
    }

    #[test]
    fn minimal_example() {
        let loaded = ok(MINIMAL);
        assert!(loaded.warnings.is_empty());
        let cfg = loaded.config;
        assert_eq!(cfg.providers.len(), 1);
        let p = &cfg.providers[0];
        assert_eq!(p.provider, "provider_name");
        assert_eq!(
            p.base_url.as_deref(),
            Some("https://api.your.com/v1/chat/completions")
        );
        assert_eq!(p.api, ["sk-YgS6GTi0b4bEabc4C"]);
        assert_eq!(p.model, None);
        assert!(p.tools && p.image);
        let k = &cfg.api_keys[0];
        assert_eq!(k.api, "sk-Pkj60Yf8JFWxfgRmXQFWyGtWUddGZnmi3KlvowmRWpWpQxx");
        assert_eq!(k.model.len(), 1);
        assert_eq!(k.model[0].rule, "all");
        assert_eq!(k.model[0].weight, None);
        assert_eq!(k.preferences.auto_retry, AutoRetry::Enabled(true));
    }

    #[test]
    fn broken_example_reports_every_problem() {
        let diags = match parse_config(BROKEN, "broken.yaml", &env) {
            Ok(_) => panic!("broken.yaml parsed"),
            Err(e) => e,
        };
        let expected = [
            "broken.yaml:9:27: providers[0].preferences.api_key_rate_limit: invalid rate limit \"15/mins\": unknown unit `mins` (units are singular: write `15/min`)",
            "broken.yaml:10:14: providers[0].preferences.proxy: expected a proxy URL starting with http://, https://, socks5:// or socks5h://, found \"ftp://proxy.local:21\"",
            "broken.yaml:11:5: providers[1]: duplicate provider name \"openai\", already used by providers[0] at line 3:5; names must be unique because key pools and `provider/model` rules refer to them",
            "broken.yaml:14:5: providers[2]: missing `provider`: every provider needs a name, e.g. `- provider: openai`",
            "broken.yaml:16:5: providers[3]: missing `base_url`: only providers with `project_id` (Vertex) or `cf_account_id` (Cloudflare) can omit it",
            "broken.yaml:22:19: api_keys[0].model[0][\"openai/*\"]: a weight must be a positive whole number, found 0",
            "broken.yaml:24:16: api_keys[0].preferences.credits: expected an amount of dollars like 10, found the string \"lots\"",
            "broken.yaml:25:19: api_keys[0].preferences.created_at: expected a date-time like 2024-01-01T00:00:00+08:00, found \"yesterday\" (the date must start with a 4-digit year)",
            "broken.yaml:26:5: api_keys[1]: duplicate client key, already used by api_keys[0] at line 20:5; each key must appear once so its rules and limits are unambiguous",
            "broken.yaml:27:5: api_keys[2]: missing `api`: every client key entry needs the key itself, e.g. `- api: sk-...`",
            "broken.yaml:32:13: preferences.model_price.gpt-4o: expected \"input,output\" dollars per million tokens like \"1,2\", found \"cheap\" (not a number)",
            "broken.yaml:33:27: preferences.max_request_body_bytes: expected a size in bytes like 1048576, \"20MB\" or \"20MiB\": \"20 parsecs\" has an unknown unit `parsecs` (use B, KB, MB, GB, KiB, MiB or GiB)",
            "broken.yaml:34:3: warning: preferences.cooldown_periodd: unknown key `cooldown_periodd` is ignored (did you mean `cooldown_period`?)",
        ];
        assert_eq!(lines(&diags), expected);
        assert_eq!(diags.iter().filter(|d| d.is_error()).count(), 12);
        // every reported position is on the line the fixture marks with a comment
        for d in diags.iter().filter(|d| d.is_error()) {
            let line = BROKEN.lines().nth(d.line as usize - 1).unwrap();
            assert!(
                line.contains(" # "),
                "line {} is not marked: {line}",
                d.line
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // interpolation

    #[test]
    fn interpolation_in_values() {
        let text = "providers:\n  - provider: ${A}\n    base_url: ${BASE:-https://api.example.com}/v1\n    api: ${KEY}\n    notes: \"${A}-${A}: ${COLON} ${NOPE:-x}\"\n    model:\n      - m: ${A}\napi_keys:\n  - api: sk-${A}\n";
        let cfg = ok(text).config;
        let p = &cfg.providers[0];
        assert_eq!(p.provider, "alpha");
        assert_eq!(p.base_url.as_deref(), Some("https://api.example.com/v1"));
        assert_eq!(p.api, ["sk-from-env"]);
        assert_eq!(p.notes.as_deref(), Some("alpha-alpha: a: b x"));
        assert_eq!(p.model.as_ref().unwrap()[0].alias, "alpha");
        assert_eq!(cfg.api_keys[0].api, "sk-alpha");
    }

    #[test]
    fn unset_variable_is_kept_with_a_positioned_warning() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    api: ${MISSING_KEY}\n",
        );
        let loaded = ok(&text);
        assert_eq!(loaded.config.providers[0].api, ["${MISSING_KEY}"]);
        assert_eq!(
            lines(&loaded.warnings),
            [format!(
                "{}warning: providers[0].api: environment variable `MISSING_KEY` is not set and has no default; `${{MISSING_KEY}}` is kept as written (use `${{MISSING_KEY:-default}}` to give a default)",
                loc(&text, "${MISSING_KEY}")
            )]
        );
    }

    #[test]
    fn keys_and_non_strings_are_not_interpolated() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    preferences:\n      post_body_parameter_overrides:\n        ${A}: 1\n",
        );
        let cfg = ok(&text).config;
        let o = cfg.providers[0]
            .preferences
            .post_body_parameter_overrides
            .as_ref()
            .unwrap();
        assert_eq!(o["${A}"], json!(1));
    }

    // -----------------------------------------------------------------------------------------
    // structure errors

    #[test]
    fn yaml_syntax_error_position() {
        let text = "providers:\n  - provider: a\n    base_url: [https://x\napi_keys: []\n";
        let errs = all(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("api.yaml:4:9: invalid YAML: "),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn duplicate_yaml_key() {
        let text = "providers: []\napi_keys: []\nproviders: []\n";
        assert_eq!(
            all(text),
            [
                "api.yaml:3:1: duplicate key `providers`: it already appears earlier in the same mapping"
            ]
        );
    }

    #[test]
    fn key_level_problems_do_not_hide_other_errors() {
        let text =
            "preferences:\n  model_timeout:\n    1: 5\n    \"1\": 6\n  cooldown_period: soon\n";
        assert_eq!(
            errors(text),
            [
                format!(
                    "{}preferences.model_timeout.1: duplicate key \"1\" (first at line 3:5)",
                    loc(text, "\"1\"")
                ),
                format!(
                    "{}preferences.cooldown_period: expected a number of seconds, found the string \"soon\"",
                    loc(text, "soon")
                ),
            ]
        );
    }

    #[test]
    fn top_level_must_be_a_mapping() {
        assert_eq!(
            all("- providers\n"),
            [
                "api.yaml:1:1: the file must be a mapping with `providers`, `api_keys` and `preferences` at the top level, found a list"
            ]
        );
    }

    #[test]
    fn providers_must_be_a_list() {
        let text = format!("providers:\n  provider: openai\n{KEYS}");
        assert_eq!(
            errors(&text),
            [format!(
                "{}providers: expected a list of providers (items starting with `- provider: name`), found a mapping",
                loc(&text, "provider: openai")
            )]
        );
        let text = format!("providers:\n  - just-a-name\n{KEYS}");
        assert_eq!(
            errors(&text),
            [format!(
                "{}providers[0]: expected a provider mapping (`- provider: name` followed by `base_url`, `api`, ...), found the string \"just-a-name\"",
                loc(&text, "just-a-name")
            )]
        );
    }

    #[test]
    fn empty_files_are_valid_but_warned() {
        for text in ["", "# only a comment\n", "\n\n", "---\n"] {
            let loaded = ok(text);
            assert!(loaded.config.providers.is_empty() && loaded.config.api_keys.is_empty());
            assert_eq!(
                lines(&loaded.warnings),
                [
                    "api.yaml:1:1: warning: empty configuration: no providers and no api_keys; every request will be rejected"
                ]
            );
        }
        let text = "providers:\n  - provider: p\n    base_url: https://x.example\n";
        assert_eq!(
            warnings(text),
            ["api.yaml:1:1: warning: api_keys: no api_keys: every request will be rejected"]
        );
    }

    #[test]
    fn several_documents_are_an_error() {
        let text = "providers: []\n---\napi_keys: []\n";
        assert_eq!(
            all(text),
            [
                "api.yaml:3:1: a second YAML document starts here; api.yaml must contain exactly one document"
            ]
        );
    }

    #[test]
    fn all_errors_are_reported_not_just_the_first() {
        let text = "providers:\n  - provider: a\n  - provider: b\n    base_url: ftp://x\napi_keys:\n  - role: x\n";
        assert_eq!(
            errors(text),
            [
                format!(
                    "{}providers[0]: missing `base_url`: only providers with `project_id` (Vertex) or `cf_account_id` (Cloudflare) can omit it",
                    loc(text, "provider: a")
                ),
                format!(
                    "{}providers[1].base_url: expected an http:// or https:// URL, found \"ftp://x\"",
                    loc(text, "ftp://x")
                ),
                format!(
                    "{}api_keys[0]: missing `api`: every client key entry needs the key itself, e.g. `- api: sk-...`",
                    loc(text, "role: x")
                ),
            ]
        );
    }

    // -----------------------------------------------------------------------------------------
    // providers

    #[test]
    fn duplicate_provider_names_name_both_lines() {
        let text = with_keys(
            "providers:\n  - provider: dup\n    base_url: https://a.example\n  - provider: other\n    base_url: https://b.example\n  - provider: dup\n    base_url: https://c.example\n",
        );
        let (l1, c1) = at_nth(&text, "provider: dup", 0);
        let (l2, c2) = at_nth(&text, "provider: dup", 1);
        assert_eq!(
            errors(&text),
            [format!(
                "api.yaml:{l2}:{c2}: providers[2]: duplicate provider name \"dup\", already used by providers[0] at line {l1}:{c1}; names must be unique because key pools and `provider/model` rules refer to them"
            )]
        );
    }

    #[test]
    fn base_url_is_derived_for_vertex_and_cloudflare_only() {
        let text = with_keys(
            "providers:\n  - provider: v\n    project_id: p1\n  - provider: cf\n    cf_account_id: acc\n    base_url: https://elsewhere.example\n  - provider: gw\n    project_id: [p1, p2]\n    base_url: https://gateway.ai.cloudflare.com/v1/acc/gw/google-vertex-ai\n",
        );
        let loaded = ok(&text);
        let urls: Vec<&str> = loaded
            .config
            .providers
            .iter()
            .map(|p| p.base_url.as_deref().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "https://aiplatform.googleapis.com/",
                "https://api.cloudflare.com/",
                "https://gateway.ai.cloudflare.com/v1/acc/gw/google-vertex-ai"
            ]
        );
        assert_eq!(
            lines(&loaded.warnings),
            [format!(
                "{}warning: providers[1].base_url: ignored: because `cf_account_id` is set, the base URL is https://api.cloudflare.com/ (uni-api does the same)",
                loc(&text, "https://elsewhere")
            )]
        );
        // an engine alone does not give a URL
        let text = with_keys("providers:\n  - provider: e\n    engine: claude\n    api: k\n");
        assert_eq!(
            errors(&text),
            [format!(
                "{}providers[0]: missing `base_url`: only providers with `project_id` (Vertex) or `cf_account_id` (Cloudflare) can omit it",
                loc(&text, "provider: e")
            )]
        );
    }

    #[test]
    fn provider_coercions() {
        let text = with_keys(
            "providers:\n  - provider: 42\n    base_url: https://x.example\n    api: 0123\n    tools: False\n    image: \"false\"\n    project_id: 7\n    model:\n      - 1.5\n      - upstream: 2024\n      - a: b\n        c: d\n  - provider: p2\n    base_url: https://y.example\n    api: [k1, 2, \"\"]\n    model: []\n",
        );
        let loaded = ok(&text);
        let p = &loaded.config.providers[0];
        assert_eq!(p.provider, "42");
        assert_eq!(p.api, ["0123"]);
        assert!(!p.tools && !p.image);
        // project_id alone makes it Vertex
        assert_eq!(p.project_id, ["7"]);
        let m = p.model.as_ref().unwrap();
        let pairs: Vec<(&str, &str)> = m
            .iter()
            .map(|e| (e.upstream.as_str(), e.alias.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("1.5", "1.5"), ("upstream", "2024"), ("a", "b"), ("c", "d")]
        );
        let p2 = &loaded.config.providers[1];
        assert_eq!(p2.api, ["k1", "2"]);
        // an empty list means "discover", as in uni-api
        assert_eq!(p2.model, None);
        assert_eq!(
            lines(&loaded.warnings),
            [
                format!(
                    "{}warning: providers[0].base_url: ignored: because `project_id` is set, the base URL is https://aiplatform.googleapis.com/ (uni-api does the same)",
                    loc(&text, "https://x.example")
                ),
                format!(
                    "{}warning: providers[1].api[2]: empty key ignored",
                    loc(&text, "\"\"]")
                ),
            ]
        );
    }

    #[test]
    fn provider_type_errors() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    api: {a: b}\n    tools: maybe\n    region: 5\n    model:\n      - gpt:\n      - [x]\n",
        );
        assert_eq!(
            errors(&text),
            [
                format!(
                    "{}providers[0].api: expected a list of keys or a single key string, found a mapping",
                    loc(&text, "{a: b}")
                ),
                format!(
                    "{}providers[0].tools: expected true or false, found the string \"maybe\"",
                    loc(&text, "maybe")
                ),
                format!(
                    "{}providers[0].region: expected a region name like `us-central1` (uni-api requires a single string), found the integer `5`",
                    loc_at(&text, "region: 5", 8)
                ),
                format!(
                    "{}providers[0].model[0].gpt: no alias after `gpt:`; write `- gpt` to use the name as is, or `- gpt: alias`",
                    loc(&text, "gpt:")
                ),
                format!(
                    "{}providers[0].model[1]: expected a model name or `upstream-name: alias`, found a list",
                    loc(&text, "[x]")
                ),
            ]
        );
    }

    // -----------------------------------------------------------------------------------------
    // api_keys

    const PROVIDERS: &str = "providers:\n  - provider: p\n    base_url: https://x.example\n";

    fn with_providers(keys: &str) -> String {
        format!("{PROVIDERS}{keys}")
    }

    #[test]
    fn duplicate_client_keys_do_not_print_the_key() {
        let text = with_providers(
            "api_keys:\n  - api: sk-secret\n  - api: sk-other\n  - api: sk-secret\n",
        );
        let (l1, c1) = at_nth(&text, "api: sk-secret", 0);
        let (l2, c2) = at_nth(&text, "api: sk-secret", 1);
        let errs = errors(&text);
        assert_eq!(
            errs,
            [format!(
                "api.yaml:{l2}:{c2}: api_keys[2]: duplicate client key, already used by api_keys[0] at line {l1}:{c1}; each key must appear once so its rules and limits are unambiguous"
            )]
        );
        assert!(!errs[0].contains("sk-secret"));
    }

    #[test]
    fn model_rules_and_weights() {
        let text = with_providers(
            "api_keys:\n  - api: 12345\n  - api: k2\n    model:\n      - p/*: \"3\"\n      - gpt-4o\n      - 7\n  - api: k3\n    model: []\n  - api: k4\n    model: p/*\n  - api: k5\n    model:\n      # - all entries commented out\n",
        );
        let loaded = ok(&text);
        let keys = &loaded.config.api_keys;
        assert_eq!(keys[0].api, "12345");
        assert_eq!(keys[0].model.len(), 1);
        assert_eq!(keys[0].model[0].rule, "all");
        let rules: Vec<(&str, Option<u32>)> = keys[1]
            .model
            .iter()
            .map(|r| (r.rule.as_str(), r.weight))
            .collect();
        assert_eq!(rules, [("p/*", Some(3)), ("gpt-4o", None), ("7", None)]);
        assert_eq!(keys[2].model[0].rule, "all");
        assert_eq!(keys[3].model[0].rule, "p/*");
        assert_eq!(keys[4].model[0].rule, "all");
        assert_eq!(
            lines(&loaded.warnings),
            [
                format!(
                    "{}warning: api_keys[2].model: an empty list allows every model (uni-api treats it like `all`)",
                    loc(&text, "[]")
                ),
                format!(
                    "{}warning: api_keys[3].model: a single rule; uni-api expects a list here, write it as `- rule`",
                    loc_at(&text, "model: p/*", 7)
                ),
                format!(
                    "{}warning: api_keys[4].model: no rules listed: this key may use every model (as with `all`)",
                    loc(&text, "model:\n      #")
                ),
            ]
        );
    }

    #[test]
    fn bad_weights() {
        let text = with_providers(
            "api_keys:\n  - api: k\n    model:\n      - a/*: 0\n      - b/*: -2\n      - c/*: 2.5\n      - d/*: lots\n      - gpt-4o: 5\n      - e/*: 99999999999\n",
        );
        assert_eq!(
            errors(&text),
            [
                format!(
                    "{}api_keys[0].model[0][\"a/*\"]: a weight must be a positive whole number, found 0",
                    loc_at(&text, "a/*: 0", 5)
                ),
                format!(
                    "{}api_keys[0].model[1][\"b/*\"]: a weight must be a positive whole number, found -2",
                    loc_at(&text, "b/*: -2", 5)
                ),
                format!(
                    "{}api_keys[0].model[2][\"c/*\"]: a weight must be a positive whole number like 5, found the number `2.5`",
                    loc_at(&text, "c/*: 2.5", 5)
                ),
                format!(
                    "{}api_keys[0].model[3][\"d/*\"]: a weight must be a positive whole number like 5, found the string \"lots\"",
                    loc_at(&text, "d/*: lots", 5)
                ),
                format!(
                    "{}api_keys[0].model[4].gpt-4o: a weight needs a `provider/model` or `provider/*` rule, found \"gpt-4o\" (uni-api fails to load this)",
                    loc(&text, "gpt-4o: 5")
                ),
                format!(
                    "{}api_keys[0].model[5][\"e/*\"]: weight 99999999999 is too large",
                    loc_at(&text, "e/*: 9", 5)
                ),
            ]
        );
    }

    #[test]
    fn api_key_preferences() {
        let text = with_providers(
            "api_keys:\n  - api: k1\n    preferences:\n      SCHEDULING_ALGORITHM: lottery\n      AUTO_RETRY: 3\n      RATE_LIMIT: 2/min\n      ENABLE_MODERATION: \"true\"\n      credits: \"2.5\"\n      created_at: 2024-02-29\n  - api: k2\n    preferences:\n      SCHEDULING_ALGORITHM: fastest\n      AUTO_RETRY: 0\n      rate_limit: 1/s\n      RATE_LIMIT: 2/s\n      credits: -1\n      created_at: 2024-01-01 08:00:00.5 Z\n  - api: k3\n    preferences:\n      AUTO_RETRY: false\n      credits: -3\n",
        );
        let loaded = ok(&text);
        let k = &loaded.config.api_keys;
        let p1 = &k[0].preferences;
        assert_eq!(p1.scheduling_algorithm, Some(ChannelSchedule::Lottery));
        assert_eq!(p1.auto_retry, AutoRetry::Attempts(3));
        assert_eq!(p1.rate_limit, Some(RateLimitSpec::All(vec![rl(2, 60)])));
        assert!(p1.enable_moderation);
        assert_eq!(p1.credits, Some(2.5));
        assert_eq!(p1.created_at.as_deref(), Some("2024-02-29"));
        let p2 = &k[1].preferences;
        assert_eq!(p2.scheduling_algorithm, Some(ChannelSchedule::RoundRobin));
        assert_eq!(p2.auto_retry, AutoRetry::Enabled(false));
        assert_eq!(p2.rate_limit, Some(RateLimitSpec::All(vec![rl(1, 1)])));
        assert_eq!(p2.credits, None);
        assert_eq!(p2.created_at.as_deref(), Some("2024-01-01 08:00:00.5 Z"));
        let p3 = &k[2].preferences;
        assert_eq!(p3.auto_retry, AutoRetry::Enabled(false));
        assert_eq!(p3.credits, Some(-3.0));
        assert_eq!(
            lines(&loaded.warnings),
            [
                format!(
                    "{}warning: api_keys[1].preferences.SCHEDULING_ALGORITHM: unknown algorithm \"fastest\"; it behaves like round_robin, as in uni-api (known: fixed_priority, round_robin, weighted_round_robin, lottery, random, smart_round_robin)",
                    loc(&text, "fastest")
                ),
                format!(
                    "{}warning: api_keys[1].preferences.RATE_LIMIT: ignored because `rate_limit` is also set (uni-api only reads `rate_limit`)",
                    loc(&text, "2/s")
                ),
                format!(
                    "{}warning: api_keys[2].preferences.credits: negative credits: this key is rejected on every request (omit `credits` or use -1 for unlimited)",
                    loc(&text, "-3")
                ),
            ]
        );
    }

    #[test]
    fn api_key_preference_errors() {
        let text = with_providers(
            "api_keys:\n  - api: k1\n    preferences:\n      AUTO_RETRY: -1\n      ENABLE_MODERATION: sometimes\n      created_at: 2024-13-01T00:00:00Z\n      credits: [1]\n      rate_limit: 10/minutes\n  - api: k2\n    preferences:\n      AUTO_RETRY: maybe\n      created_at: 1704067200\n      rate_limit:\n        gpt-4: 5/Min\n        default: 0/min\n",
        );
        assert_eq!(
            errors(&text),
            [
                format!(
                    "{}api_keys[0].preferences.AUTO_RETRY: expected true, false or a number of retries (0 or more), found -1",
                    loc(&text, "-1")
                ),
                format!(
                    "{}api_keys[0].preferences.ENABLE_MODERATION: expected true or false, found the string \"sometimes\"",
                    loc(&text, "sometimes")
                ),
                format!(
                    "{}api_keys[0].preferences.created_at: expected a date-time like 2024-01-01T00:00:00+08:00, found \"2024-13-01T00:00:00Z\" (month 13 does not exist)",
                    loc(&text, "2024-13")
                ),
                format!(
                    "{}api_keys[0].preferences.credits: expected an amount of dollars like 10, found a list",
                    loc(&text, "[1]")
                ),
                format!(
                    "{}api_keys[0].preferences.rate_limit: invalid rate limit \"10/minutes\": unknown unit `minutes` (units are singular: write `10/minute`)",
                    loc(&text, "10/minutes")
                ),
                format!(
                    "{}api_keys[1].preferences.AUTO_RETRY: expected true or false, found the string \"maybe\"",
                    loc(&text, "maybe")
                ),
                format!(
                    "{}api_keys[1].preferences.created_at: expected a date-time like 2024-01-01T00:00:00+08:00, found the integer `1704067200`",
                    loc(&text, "1704067200")
                ),
                format!(
                    "{}api_keys[1].preferences.rate_limit.gpt-4: invalid rate limit \"5/Min\": unknown unit `Min` (units are lower-case: write `5/min`)",
                    loc(&text, "5/Min")
                ),
                format!(
                    "{}api_keys[1].preferences.rate_limit.default: invalid rate limit \"0/min\": `0/min`: the count must be at least 1",
                    loc_at(&text, "default: 0/min", 9)
                ),
            ]
        );
    }

    // -----------------------------------------------------------------------------------------
    // provider preferences

    #[test]
    fn rate_limit_positions_and_per_model_maps() {
        let text = "providers:\n  - provider: a\n    base_url: https://a.example\n  - provider: b\n    base_url: https://b.example\n    preferences:\n      api_key_rate_limit: 15/min,10/dya\napi_keys:\n  - api: k\n";
        assert_eq!(
            errors(text),
            [format!(
                "{}providers[1].preferences.api_key_rate_limit: invalid rate limit \"15/min,10/dya\": unknown unit `dya` (did you mean `10/day`?)",
                loc(text, "15/min,10/dya")
            )]
        );
        assert_eq!(loc(text, "15/min,10/dya"), "api.yaml:7:27: ");

        let text = with_keys(
            "providers:\n  - provider: g\n    base_url: https://g.example\n    preferences:\n      api_key_rate_limit:\n        gemini-2.5-pro: 5/min,25/day,1048576/tpr\n        default: \" 4/m , 1/mo \"\n",
        );
        let cfg = ok(&text).config;
        assert_eq!(
            cfg.providers[0].preferences.api_key_rate_limit,
            Some(RateLimitSpec::PerModel(vec![
                (
                    "gemini-2.5-pro".into(),
                    vec![
                        rl(5, 60),
                        rl(25, 86_400),
                        RateLimit {
                            count: 1_048_576,
                            period: RatePeriod::TokensPerRequest
                        }
                    ]
                ),
                ("default".into(), vec![rl(4, 60), rl(1, 2_592_000)]),
            ]))
        );
    }

    #[test]
    fn rate_limit_syntax() {
        use super::parse::parse_rate_limit as p;
        let units = [
            ("s", 1),
            ("sec", 1),
            ("second", 1),
            ("m", 60),
            ("min", 60),
            ("minute", 60),
            ("h", 3600),
            ("hr", 3600),
            ("hour", 3600),
            ("d", 86_400),
            ("day", 86_400),
            ("mo", 2_592_000),
            ("month", 2_592_000),
            ("y", 31_536_000),
            ("year", 31_536_000),
        ];
        for (unit, secs) in units {
            assert_eq!(p(&format!("7/{unit}")), Ok(vec![rl(7, secs)]), "{unit}");
        }
        assert_eq!(p("15/min,10/day"), Ok(vec![rl(15, 60), rl(10, 86_400)]));
        assert_eq!(
            p("15/min,").unwrap_err(),
            "an empty part (a stray comma?); write limits as \"15/min,500/day\""
        );
        assert_eq!(
            p("15").unwrap_err(),
            "`15` has no unit; write it like `15/min`"
        );
        assert_eq!(
            p("15 / min").unwrap_err(),
            "no spaces allowed inside `15 / min`; write `15/min`"
        );
        assert_eq!(
            p("1.5/min").unwrap_err(),
            "`1.5/min`: the part before `/` must be a whole number of requests"
        );
        assert_eq!(
            p("-1/min").unwrap_err(),
            "`-1/min`: the part before `/` must be a whole number of requests"
        );
        assert_eq!(
            p("5/days").unwrap_err(),
            "unknown unit `days` (units are singular: write `5/day`)"
        );
        assert_eq!(
            p("5/fortnight").unwrap_err(),
            "unknown unit `fortnight` (units: s, sec, second, m, min, minute, h, hr, hour, d, day, mo, month, y, year, rpm, rph, rpd, tpm, tph, tpd, tpr)"
        );
        assert!(
            p("99999999999999999999/min")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn rate_limit_type_errors_and_tpr_scope() {
        let text = with_providers(
            "api_keys:\n  - api: k\n    preferences:\n      rate_limit: 100/min,5000/tpr\npreferences:\n  rate_limit: 60\n",
        );
        assert_eq!(
            all(&text),
            [
                format!(
                    "{}warning: api_keys[0].preferences.rate_limit: `tpr` (tokens per request) only applies to a provider's api_key_rate_limit; ignored here",
                    loc(&text, "100/min")
                ),
                format!(
                    "{}preferences.rate_limit: expected a rate limit like \"15/min\" or \"15/min,500/day\", found the integer `60`",
                    loc_at(&text, "rate_limit: 60", 12)
                ),
            ]
        );
    }

    #[test]
    fn provider_preferences_values() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    exclude_endpoints: v1/responses/compact/\n    only_request_types: Compaction\n    preferences:\n      exclude_endpoints: [/v1/embeddings, /v1/responses/compact]\n      exclude_request_types: [compaction]\n      api_key_schedule_algorithm: smart_round_robin\n      api_key_cooldown_period: \"60\"\n      api_key_rate_limit_cooldown_period: 1.5e3\n      api_key_quota_cooldown_period: 21600\n      cooldown_period: 0\n      model_timeout: 30.5\n      keepalive_interval: {gpt: 5, default: 10}\n      proxy: HTTP://proxy:8080\n      headers:\n        X-Num: 5\n        X-Bool: true\n        X-Float: 1e3\n      passthrough_request_headers: [OpenAI-Organization, x-trace]\n      max_request_body_bytes: 20MB\n      responses_stream_commit_policy: real_output\n      oaix_routing_attempt_id: TRUE\n      search_defaults: {topic: news, max_results: 5}\n      timeout_policy:\n        default: {first_byte: 30}\n      post_body_parameter_overrides:\n        temperature: 0.5\n        n: 2\n        stop: null\n        flag: yes\n        nested: {a: [1, 2.0, \"3\", false]}\n",
        );
        let loaded = ok(&text);
        assert_eq!(lines(&loaded.warnings), Vec::<String>::new());
        let p = &loaded.config.providers[0];
        assert_eq!(
            p.exclude_endpoints,
            ["/v1/responses/compact", "/v1/embeddings"]
        );
        assert_eq!(p.only_request_types, ["compaction"]);
        assert_eq!(p.exclude_request_types, ["compaction"]);
        let pp = &p.preferences;
        assert_eq!(
            pp.api_key_schedule_algorithm,
            Some(KeySchedule::SmartRoundRobin)
        );
        assert_eq!(pp.api_key_cooldown_period, Some(60.0));
        assert_eq!(pp.api_key_rate_limit_cooldown_period, Some(1500.0));
        assert_eq!(pp.api_key_quota_cooldown_period, Some(21600.0));
        assert_eq!(pp.cooldown_period, Some(0.0));
        assert_eq!(pp.model_timeout, Some(PerModel::All(30.5)));
        assert_eq!(
            pp.keepalive_interval,
            Some(PerModel::Map(vec![
                ("gpt".into(), 5.0),
                ("default".into(), 10.0)
            ]))
        );
        assert_eq!(pp.proxy.as_deref(), Some("HTTP://proxy:8080"));
        assert_eq!(
            pp.headers,
            [
                ("X-Num".to_owned(), "5".to_owned()),
                ("X-Bool".to_owned(), "true".to_owned()),
                ("X-Float".to_owned(), "1e3".to_owned())
            ]
        );
        assert_eq!(
            pp.passthrough_request_headers,
            ["OpenAI-Organization", "x-trace"]
        );
        assert_eq!(pp.max_request_body_bytes, Some(20_000_000));
        assert_eq!(
            pp.responses_stream_commit_policy.as_deref(),
            Some("real_output")
        );
        assert_eq!(pp.oaix_routing_attempt_id, Some(true));
        assert_eq!(
            pp.search_defaults,
            Some(json!({"topic": "news", "max_results": 5}))
        );
        assert_eq!(
            pp.timeout_policy,
            Some(json!({"default": {"first_byte": 30}}))
        );
        assert_eq!(
            serde_json::Value::Object(pp.post_body_parameter_overrides.clone().unwrap()),
            json!({"temperature": 0.5, "n": 2, "stop": null, "flag": "yes",
                   "nested": {"a": [1, 2.0, "3", false]}})
        );
        let o = pp.post_body_parameter_overrides.as_ref().unwrap();
        assert!(o["n"].is_i64() && o["nested"]["a"][1].is_f64());
    }

    #[test]
    fn provider_preference_errors() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    preferences:\n      api_key_cooldown_period: -5\n      model_timeout: {gpt: 0}\n      keepalive_interval: [1]\n      proxy: socks4://h:1\n      headers:\n        Bad Name: x\n        X-Empty:\n        X-List: [a]\n      post_body_parameter_overrides: [a]\n      max_request_body_bytes: -1\n      timeout_policy: fast\n",
        );
        assert_eq!(
            errors(&text),
            [
                format!(
                    "{}providers[0].preferences.api_key_cooldown_period: must be 0 or more seconds, found -5",
                    loc(&text, "-5")
                ),
                format!(
                    "{}providers[0].preferences.model_timeout.gpt: must be greater than 0 seconds, found 0",
                    loc_at(&text, "{gpt: 0}", 6)
                ),
                format!(
                    "{}providers[0].preferences.keepalive_interval: expected a number of seconds or a mapping `model: seconds`, found a list",
                    loc(&text, "[1]")
                ),
                format!(
                    "{}providers[0].preferences.proxy: expected a proxy URL starting with http://, https://, socks5:// or socks5h://, found \"socks4://h:1\"",
                    loc(&text, "socks4")
                ),
                format!(
                    "{}providers[0].preferences.headers[\"Bad Name\"]: \"Bad Name\" is not a valid HTTP header name",
                    loc(&text, "Bad Name")
                ),
                format!(
                    "{}providers[0].preferences.headers.X-Empty: the header has no value",
                    loc(&text, "X-Empty:")
                ),
                format!(
                    "{}providers[0].preferences.headers.X-List: expected a header value string, found a list",
                    loc(&text, "[a]\n      post")
                ),
                format!(
                    "{}providers[0].preferences.post_body_parameter_overrides: expected a mapping, found a list",
                    loc(&text, "[a]\n      max")
                ),
                format!(
                    "{}providers[0].preferences.max_request_body_bytes: expected a size in bytes like 1048576, \"20MB\" or \"20MiB\": must not be negative",
                    loc(&text, "-1")
                ),
                format!(
                    "{}providers[0].preferences.timeout_policy: expected a mapping, found the string \"fast\"",
                    loc(&text, "fast")
                ),
            ]
        );
    }

    #[test]
    fn timeout_policy_and_key_schedule() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    preferences:\n      api_key_schedule_algorithm: least_used\n      timeout_policy:\n        default: {first_byte: 30, totl: 100}\n        rules:\n          - match: {endpoint: /v1/responses, stream: true, modle: x}\n            timeout: {idle: fast}\n",
        );
        let all = all(&text);
        assert_eq!(
            all,
            [
                format!(
                    "{}warning: providers[0].preferences.api_key_schedule_algorithm: unknown algorithm \"least_used\"; using round_robin like uni-api (known: round_robin, random, fixed_priority, smart_round_robin)",
                    loc(&text, "least_used")
                ),
                format!(
                    "{}warning: providers[0].preferences.timeout_policy.default.totl: unknown key `totl` is ignored (did you mean `total`?)",
                    loc(&text, "totl")
                ),
                format!(
                    "{}warning: providers[0].preferences.timeout_policy.rules[0].match.modle: unknown key `modle` is ignored (did you mean `model`?)",
                    loc(&text, "modle")
                ),
                format!(
                    "{}providers[0].preferences.timeout_policy.rules[0].timeout.idle: expected a number of seconds, found the string \"fast\"",
                    loc(&text, "fast")
                ),
            ]
        );
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    preferences:\n      api_key_schedule_algorithm: fixed_priority\n      timeout_policy:\n        default: {first_byte: 30}\n        rules:\n          - match: {model: gpt-5*}\n            timeout: {total: 600}\n",
        );
        let p = &ok(&text).config.providers[0].preferences;
        assert_eq!(
            p.api_key_schedule_algorithm,
            Some(KeySchedule::FixedPriority)
        );
        assert_eq!(
            p.timeout_policy,
            Some(json!({"default": {"first_byte": 30},
                        "rules": [{"match": {"model": "gpt-5*"}, "timeout": {"total": 600}}]}))
        );
    }

    #[test]
    fn sizes() {
        use super::parse::parse_size as p;
        assert_eq!(p("20MB"), Ok(20_000_000));
        assert_eq!(p("20MiB"), Ok(20 << 20));
        assert_eq!(p("512KB"), Ok(512_000));
        assert_eq!(p("512 kib"), Ok(512 << 10));
        assert_eq!(p("1GB"), Ok(1_000_000_000));
        assert_eq!(p("1.5GiB"), Ok(3 << 29));
        assert_eq!(p("1048576"), Ok(1_048_576));
        assert_eq!(p("100B"), Ok(100));
        assert!(p("MB").is_err());
        assert!(p("20 parsecs").is_err());
        assert!(p("").is_err());
        let text = with_keys("providers: []\npreferences:\n  max_request_body_bytes: 0\n");
        assert_eq!(
            errors(&text),
            [format!(
                "{}preferences.max_request_body_bytes: must be greater than 0 bytes",
                loc_at(&text, "bytes: 0", 7)
            )]
        );
        let text = "preferences:\n  max_request_body_bytes: 64MiB\n";
        assert_eq!(
            ok(text).config.preferences.max_request_body_bytes,
            Some(64 << 20)
        );
    }

    #[test]
    fn timestamps() {
        use super::parse::check_timestamp as t;
        for ok_text in [
            "2024-01-01T00:00:00+08:00",
            "2024-01-01T00:00:00Z",
            "2024-01-01t00:00:00z",
            "2024-01-01 00:00:00",
            "2024-01-01T00:00",
            "2024-1-1 1:02:03.123456 -05",
            "2024-01-01T00:00:00.5+0530",
            "2024-02-29",
            "2000-02-29",
        ] {
            assert_eq!(t(ok_text), Ok(()), "{ok_text}");
        }
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-04-31",
            "2024-01-01T24:00:00",
            "2024-01-01T00:60:00",
            "2024-01-01T00:00:00+25:00",
            "2024-01-01T",
            "2024-01-01T00:00:00 extra",
            "24-01-01",
            "yesterday",
            "",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn model_prices() {
        let text = with_keys(
            "providers: []\npreferences:\n  model_price:\n    gpt-5.2: \" 1 , 2 \"\n    single: 3\n    bad: 1,x\n    neg: -1,2\n    many: 1,2,3\n    none:\n",
        );
        let diags = all(&text);
        assert_eq!(
            diags,
            [
                format!(
                    "{}warning: providers: no providers: no model can be served (except through API-key channels)",
                    loc(&text, "providers")
                ),
                format!(
                    "{}warning: preferences.model_price.single: only one price given: input 3 $/M, output 1 $/M (uni-api's default); write \"3,<output>\"",
                    loc_at(&text, "single: 3", 8)
                ),
                format!(
                    "{}preferences.model_price.bad: expected \"input,output\" dollars per million tokens like \"1,2\", found \"1,x\" (both prices must be non-negative numbers)",
                    loc(&text, "1,x")
                ),
                format!(
                    "{}preferences.model_price.neg: expected \"input,output\" dollars per million tokens like \"1,2\", found \"-1,2\" (both prices must be non-negative numbers)",
                    loc(&text, "-1,2")
                ),
                format!(
                    "{}preferences.model_price.many: expected \"input,output\" dollars per million tokens like \"1,2\", found \"1,2,3\" (more than two values)",
                    loc(&text, "1,2,3")
                ),
                format!(
                    "{}preferences.model_price.none: expected \"input,output\" dollars per million tokens like \"1,2\", found nothing (null)",
                    loc(&text, "none:")
                ),
            ]
        );
        let text = "preferences:\n  model_price:\n    gpt-5.2: 1,2\n    o1: 15,60\n";
        let prices = ok(text).config.preferences.model_price;
        assert_eq!(prices[0].0, "gpt-5.2");
        assert_eq!(prices[1].1.output_per_million, 60.0);
    }

    #[test]
    fn global_preferences_values() {
        let text = with_keys(
            "providers: []\npreferences:\n  model_timeout: 100\n  keepalive_interval: \"50\"\n  cooldown_period: 300\n  error_triggers: just one\n  proxy: socks5h://user:pass@host:1080\n  hedging: {enabled: true, max_inflight_attempts: 2}\n  timeout_policy: {rules: []}\nvideo_providers:\n  - name: v\n    weight: 1.5\n",
        );
        let cfg = ok(&text).config;
        let g = &cfg.preferences;
        assert_eq!(g.model_timeout, Some(PerModel::All(100.0)));
        assert_eq!(g.keepalive_interval, Some(PerModel::All(50.0)));
        assert_eq!(g.cooldown_period, Some(300.0));
        assert_eq!(g.error_triggers, ["just one"]);
        assert_eq!(g.proxy.as_deref(), Some("socks5h://user:pass@host:1080"));
        assert_eq!(
            g.hedging,
            Some(json!({"enabled": true, "max_inflight_attempts": 2}))
        );
        assert_eq!(g.timeout_policy, Some(json!({"rules": []})));
        assert_eq!(
            cfg.video_providers,
            Some(json!([{"name": "v", "weight": 1.5}]))
        );
    }

    // -----------------------------------------------------------------------------------------
    // booleans, unknown keys, request rules

    #[test]
    fn booleans() {
        let text = with_keys(
            "providers:\n  - provider: a\n    base_url: https://a.example\n    tools: TRUE\n    image: 0\n  - provider: b\n    base_url: https://b.example\n    tools: no\n    image: \"True\"\n",
        );
        let loaded = ok(&text);
        let p = &loaded.config.providers;
        assert!(p[0].tools && !p[0].image);
        assert!(!p[1].tools && p[1].image);
        assert_eq!(
            lines(&loaded.warnings),
            [format!(
                "{}warning: providers[1].tools: \"no\" is a string in YAML 1.2 (uni-api treats any non-empty string as true); read as false here, write `false` to be unambiguous",
                loc_at(&text, "tools: no", 7)
            )]
        );
    }

    #[test]
    fn unknown_keys_warn_with_positions_and_hints() {
        let text = "providers:\n  - provider: p\n    base_url: https://x.example\n    api_key_rate_limit: 5/min\n    colour: blue\n    _model_dict_cache: {a: a}\n    preferences:\n      model: [x]\n      rate_limit: 5/min\napi_keys:\n  - api: k\n    weights: {p/*: 1}\n    AUTO_RETRY: false\n    preferences:\n      scheduling_algorithm: random\n      proxy: http://p:1\napikeys: []\nmodel_timeout: 5\npreferences:\n  api_key_rate_limit: 1/min\n  SCHEDULING_ALGORITHM: random\n  cooldown: 3\n";
        let w = warnings(text);
        let expect = [
            (
                "api_key_rate_limit: 5/min",
                "providers[0].api_key_rate_limit",
                "unknown key `api_key_rate_limit` is ignored; `api_key_rate_limit` belongs under this provider's `preferences`",
            ),
            (
                "colour",
                "providers[0].colour",
                "unknown key `colour` is ignored",
            ),
            (
                "model: [x]",
                "providers[0].preferences.model",
                "unknown key `model` is ignored; `model` belongs at the provider level, next to `preferences`",
            ),
            (
                "rate_limit: 5/min\napi",
                "providers[0].preferences.rate_limit",
                "unknown key `rate_limit` is ignored; `rate_limit` is a client-key setting; for this provider's keys use `api_key_rate_limit`",
            ),
            (
                "weights",
                "api_keys[0].weights",
                "unknown key `weights` is ignored; `weights` is computed by uni-api from `model`; write weights as `- provider/*: 5` entries",
            ),
            (
                "AUTO_RETRY",
                "api_keys[0].AUTO_RETRY",
                "unknown key `AUTO_RETRY` is ignored; `AUTO_RETRY` belongs under this key's `preferences`",
            ),
            (
                "scheduling_algorithm",
                "api_keys[0].preferences.scheduling_algorithm",
                "unknown key `scheduling_algorithm` is ignored (did you mean `SCHEDULING_ALGORITHM`?)",
            ),
            (
                "proxy: http://p:1",
                "api_keys[0].preferences.proxy",
                "unknown key `proxy` is ignored; `proxy` is a provider setting; put it under a provider's `preferences`",
            ),
            (
                "apikeys",
                "apikeys",
                "unknown key `apikeys` is ignored (did you mean `api_keys`?)",
            ),
            (
                "model_timeout: 5",
                "model_timeout",
                "unknown key `model_timeout` is ignored; `model_timeout` belongs under `preferences`",
            ),
            (
                "api_key_rate_limit: 1/min",
                "preferences.api_key_rate_limit",
                "unknown key `api_key_rate_limit` is ignored; `api_key_rate_limit` is a per-provider setting; put it under a provider's `preferences`",
            ),
            (
                "SCHEDULING_ALGORITHM: random\n  cool",
                "preferences.SCHEDULING_ALGORITHM",
                "unknown key `SCHEDULING_ALGORITHM` is ignored; `SCHEDULING_ALGORITHM` is a client-key setting; put it under an `api_keys` item's `preferences`",
            ),
            (
                "cooldown: 3",
                "preferences.cooldown",
                "unknown key `cooldown` is ignored",
            ),
        ];
        let expected: Vec<String> = expect
            .iter()
            .map(|(needle, path, msg)| format!("{}warning: {path}: {msg}", loc(text, needle)))
            .collect();
        assert_eq!(w, expected);
    }

    #[test]
    fn top_level_unknown_key_lists_known_keys() {
        let text = "providers: []\napi_keys: []\nsomething_else: 1\n";
        assert!(warnings(text).contains(&format!(
            "{}warning: something_else: unknown key `something_else` is ignored; known keys here: providers, api_keys, preferences, video_providers",
            loc(text, "something_else")
        )));
    }

    #[test]
    fn exclude_request_rules() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    exclude_request_rules:\n      match: {endpoint: /v1/responses, request_model: gpt-5*}\n      reason: no\n    preferences:\n      exclude_request_rules:\n        - match: {reasoning_effort: [high, xhigh]}\n        - match: {model: x}\n        - reason: no match\n        - just text\n",
        );
        let loaded = ok(&text);
        assert_eq!(
            loaded.config.providers[0].exclude_request_rules,
            [
                json!({"match": {"endpoint": "/v1/responses", "request_model": "gpt-5*"}, "reason": "no"}),
                json!({"match": {"reasoning_effort": ["high", "xhigh"]}}),
            ]
        );
        assert_eq!(
            lines(&loaded.warnings),
            [
                format!(
                    "{}warning: providers[0].preferences.exclude_request_rules[1].match.model: the whole rule is ignored: unknown match field `model` (known: endpoint, request_model, upstream_model, reasoning_effort, request_type)",
                    loc(&text, "model: x")
                ),
                format!(
                    "{}warning: providers[0].preferences.exclude_request_rules[2]: ignored: the rule has no `match`",
                    loc(&text, "reason: no match")
                ),
                format!(
                    "{}warning: providers[0].preferences.exclude_request_rules[3]: ignored: a rule must be a mapping `{{match: {{...}}, reason: ...}}`, found the string \"just text\"",
                    loc(&text, "just text")
                ),
            ]
        );
    }

    #[test]
    fn engine_and_credentials_warnings() {
        let text = with_keys(
            "providers:\n  - provider: p\n    base_url: https://x.example\n    engine: gtp\n    aws_access_key: AK\n",
        );
        assert_eq!(
            warnings(&text),
            [
                format!(
                    "{}warning: providers[0]: AWS Bedrock needs both `aws_access_key` and `aws_secret_key`",
                    loc(&text, "provider: p")
                ),
                format!(
                    "{}warning: providers[0].engine: unknown engine \"gtp\" (did you mean `gpt`?); known engines: gpt, codex, gemini, vertex, vertex-gemini, claude, vertex-claude, aws, azure, azure-databricks, openrouter, cloudflare, cohere, doubao-translation, dalle, tts, whisper, moderation, embedding, search, content-generation",
                    loc(&text, "gtp")
                ),
            ]
        );
    }

    #[test]
    fn merge_keys_work_in_configs() {
        let text = "x-defaults: &defaults\n  base_url: https://shared.example/v1\n  tools: false\nproviders:\n  - <<: *defaults\n    provider: a\n  - <<: *defaults\n    provider: b\n    tools: true\napi_keys:\n  - api: k\n";
        let loaded = ok(text);
        let p = &loaded.config.providers;
        assert_eq!(p[0].base_url.as_deref(), Some("https://shared.example/v1"));
        assert!(!p[0].tools);
        assert!(p[1].tools);
        // the anchor holder itself is an unknown top-level key
        assert_eq!(loaded.warnings.len(), 1);
        assert_eq!(loaded.warnings[0].path, "x-defaults");
    }

    #[test]
    fn llmux_extensions_token_windows_and_key_options() {
        let text = "providers:\n  - provider: p\n    base_url: https://api.openai.com/v1\n    api:\n      - sk-plain-000000000\n      - {key: sk-org-a-11111111, scope: org-a, max_inflight: 4}\n    model: [gpt-4o]\n    preferences:\n      api_key_rate_limit: 500/rpm,40000/tpm,10000/rpd\n      key_max_inflight: 8\n      key_wait_timeout: 2.5\n      quota_scope: shared\napi_keys:\n  - api: sk-client\n";
        let l = ok(text);
        let p = &l.config.providers[0];
        assert_eq!(p.api, vec!["sk-plain-000000000", "sk-org-a-11111111"]);
        assert_eq!(p.key_options[0], KeyOptions::default());
        assert_eq!(
            p.key_options[1],
            KeyOptions {
                scope: Some("org-a".into()),
                max_inflight: Some(4)
            }
        );
        assert_eq!(
            p.preferences.api_key_rate_limit,
            Some(RateLimitSpec::All(vec![
                RateLimit {
                    count: 500,
                    period: RatePeriod::Window(60)
                },
                RateLimit {
                    count: 40000,
                    period: RatePeriod::TokenWindow(60)
                },
                RateLimit {
                    count: 10000,
                    period: RatePeriod::Window(86_400)
                },
            ]))
        );
        assert_eq!(p.preferences.key_max_inflight, Some(8));
        assert_eq!(p.preferences.key_wait_timeout, Some(2.5));
        assert_eq!(p.preferences.quota_scope.as_deref(), Some("shared"));
        let bad = parse_config("providers:\n  - provider: p\n    base_url: https://x/v1\n    api:\n      - {scope: a}\n    preferences:\n      quota_scope: org\napi_keys:\n  - api: k\n", "api.yaml", &env).unwrap_err();
        let text = lines(&bad).join("\n");
        assert!(text.contains("api.yaml:5:9: providers[0].api[0]: a key written as a mapping needs `key: <the key>`"), "{text}");
        assert!(
            text.contains("providers[0].preferences.quota_scope: expected `shared` or `per_key`"),
            "{text}"
        );
    }
}
