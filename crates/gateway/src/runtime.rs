//! The immutable, compiled form of a config that every request reads: channels with their key
//! pools, client keys with their model rules resolved into ordered candidate lists, and the
//! global settings. Built once per (re)load; requests hold an `Arc<Runtime>` for their lifetime.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use subtle::ConstantTimeEq;

use crate::auth::google::GoogleAuth;
use crate::config::schema::RateLimitSpec;
use crate::config::schema::{
    ApiKeyConfig, ApiKeyPreferences, Config, ModelEntry, PerModel, Pos, ProviderConfig,
};
use crate::config::{Diagnostic, Severity};
use crate::keypool::clock::{Clock, SystemClock};
use crate::keypool::{Algorithm, KeyPool, KeySpec, PoolSettings};
use crate::providers::engine::{self, Engine};
use crate::providers::urls;
use crate::routing::health::BreakerSettings;
use crate::routing::timeouts::{self, AttemptFacts, TimeoutInputs, TimeoutPolicy, Timeouts};
use crate::secret::mask;
use crate::usage::PriceTable;

/// Default request body limit when the config sets none.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Runtime {
    pub channels: Vec<Arc<Channel>>,
    pub keys: Vec<Arc<ClientKey>>,
    /// Aliases any key may use: tells "not allowed for you" (403) from "does not exist" (404).
    pub known_aliases: std::collections::HashSet<String>,
    pub settings: Settings,
    /// The clock every key pool of this runtime runs on.
    pub key_clock: Arc<dyn Clock>,
    key_lookup: KeyLookup,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// `TIMEOUT` env (seconds), the last step of timeout resolution.
    pub default_timeout: Duration,
    pub model_timeout: Option<PerModel<f64>>,
    pub keepalive_interval: Option<PerModel<f64>>,
    pub timeout_policy: Option<TimeoutPolicy>,
    pub max_body_bytes: u64,
    /// Fetching image URLs for upstreams that need inline bytes.
    pub media: crate::providers::media::MediaLimits,
    /// Substrings that make an answer count as failed (uni-api `error_triggers`).
    pub error_triggers: Arc<[String]>,
    /// The 403/404 circuit breaker (`PROVIDER_MODEL_CIRCUIT_*`).
    pub breaker: BreakerSettings,
    /// Global client rate limit (all keys, all routed requests).
    pub rate_limit: Option<RateLimitSpec>,
    pub prices: PriceTable,
}

/// uni-api's default channel cool-down after a failure.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);

/// Key-pool settings from a provider's preferences (uni-api keys and llmux extensions).
fn pool_settings(p: &ProviderConfig, flavor: crate::keypool::classify::Flavor) -> PoolSettings {
    use crate::config::schema::KeySchedule;
    let prefs = &p.preferences;
    let secs = |v: Option<f64>| {
        v.filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
    };
    PoolSettings {
        name: p.provider.clone(),
        flavor: Some(flavor),
        algorithm: match prefs.api_key_schedule_algorithm {
            None => Algorithm::Smart,
            Some(KeySchedule::RoundRobin) => Algorithm::RoundRobin,
            Some(KeySchedule::Random) => Algorithm::Random,
            Some(KeySchedule::FixedPriority) => Algorithm::FixedPriority,
            Some(KeySchedule::SmartRoundRobin) => Algorithm::SmartRoundRobin,
        },
        limits: prefs.api_key_rate_limit.clone(),
        cooldown: secs(prefs.api_key_cooldown_period),
        rate_limit_cooldown: secs(prefs.api_key_rate_limit_cooldown_period),
        quota_cooldown: secs(prefs.api_key_quota_cooldown_period),
        max_inflight: prefs.key_max_inflight,
        shared_scope: prefs.quota_scope.as_deref() == Some("shared"),
        seed: None,
    }
}

#[derive(Debug)]
pub struct Channel {
    pub index: usize,
    /// Shared with usage records (no copy per attempt).
    pub name: Arc<str>,
    pub base_url: String,
    /// OpenAI-style API root (`https://host/v1`) the endpoint suffixes are appended to.
    pub api_root: String,
    pub forced_engine: Option<Engine>,
    /// How this provider's answers are read (error bodies, rate-limit headers).
    pub flavor: crate::keypool::classify::Flavor,
    pub keys: KeyPool,
    /// How long a request may wait for one of this provider's keys to free up.
    pub key_wait: Duration,
    pub models: Vec<ModelEntry>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Vertex AI: the service account that mints bearer tokens, when configured.
    pub google: Option<Arc<GoogleAuth>>,
    /// Vertex AI: project and region (`global` unless configured).
    pub vertex: Option<VertexTarget>,
    /// Why this channel cannot authenticate (a broken service account), if so.
    pub auth_problem: Option<String>,
    /// AWS Bedrock: credentials and region for SigV4.
    pub aws: Option<(crate::auth::sigv4::AwsCredentials, String)>,
    /// Client headers copied to this provider's requests (`passthrough_request_headers`).
    pub passthrough_headers: Vec<HeaderName>,
    /// `preferences.proxy`, else the global `proxy`.
    pub proxy: Option<String>,
    /// Channel cool-down after a failure (provider `cooldown_period`, else global, else 300 s;
    /// zero = never cooled).
    pub cooldown: Duration,
    pub timeout_policy: Option<TimeoutPolicy>,
    /// Identity of the key pool's inputs: a reload that keeps it keeps the pool itself.
    pool_sig: u64,
    pub config: ProviderConfig,
    /// [`Channel::endpoint_url`] of each endpoint, parsed on first use (`None`: it does not
    /// parse): a request clones it instead of formatting and parsing the URL again.
    endpoint_uris: [std::sync::OnceLock<Option<http::Uri>>; urls::Endpoint::COUNT],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexTarget {
    pub project: String,
    pub region: String,
}

impl Channel {
    pub fn endpoint_url(&self, endpoint: urls::Endpoint) -> String {
        format!("{}{}", self.api_root, endpoint.suffix())
    }

    /// [`Channel::endpoint_url`] as a `Uri`, parsed once per channel and endpoint.
    pub fn endpoint_uri(
        &self,
        endpoint: urls::Endpoint,
    ) -> Result<http::Uri, http::uri::InvalidUri> {
        let cached = self.endpoint_uris.get(endpoint as usize).and_then(|cell| {
            cell.get_or_init(|| self.endpoint_url(endpoint).parse().ok())
                .as_ref()
        });
        match cached {
            Some(uri) => Ok(uri.clone()),
            // Parsed again only to say why (a base_url that is not a URL).
            None => self.endpoint_url(endpoint).parse(),
        }
    }

    /// A model name of this provider (alias or upstream), as `post_body_parameter_overrides`
    /// keys for one model are told from body fields.
    pub fn has_model_name(&self, name: &str) -> bool {
        self.models
            .iter()
            .any(|m| m.alias == name || m.upstream == name)
    }
}

/// One channel able to serve a requested alias.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub channel: usize,
    pub alias: Arc<str>,
    pub upstream_model: Arc<str>,
    pub engine: Engine,
    pub weight: Option<u32>,
    /// Set when reached through another client key used as a channel (`sk-other/*`).
    pub via_key: Option<usize>,
}

#[derive(Debug)]
pub struct ClientKey {
    pub index: usize,
    secret: String,
    /// Stable, non-reversible name of the key (its fingerprint): state kept across reloads
    /// (rotation counters, rate-limit windows, spending) is filed under it.
    pub id: Arc<str>,
    pub masked: String,
    /// `preferences.created_at` in Unix milliseconds (start of credit accounting).
    pub created_at_ms: Option<i64>,
    pub role: Option<String>,
    pub is_admin: bool,
    pub prefs: ApiKeyPreferences,
    /// Looked up by the requested model on every request: hashbrown's fast default hasher
    /// (the table comes from the config, so a client cannot choose colliding entries).
    routes: hashbrown::HashMap<String, Arc<[Candidate]>>,
    /// Aliases in rule order, as `/v1/models` lists them.
    pub model_ids: Vec<String>,
    /// Pre-rendered `/v1/models` body.
    pub models_body: Bytes,
}

impl ClientKey {
    pub fn candidates(&self, alias: &str) -> Option<&Arc<[Candidate]>> {
        self.routes.get(alias)
    }
}

/// Finds a client key by its secret without a timing side channel on the secret: a keyed hash
/// picks the bucket, then the full comparison is constant time.
#[derive(Debug)]
struct KeyLookup {
    hasher: RandomState,
    buckets: HashMap<u64, Vec<usize>>,
}

impl Runtime {
    pub fn authenticate(&self, presented: &str) -> Option<&Arc<ClientKey>> {
        let h = self.key_lookup.hasher.hash_one(presented.as_bytes());
        let bucket = self.key_lookup.buckets.get(&h)?;
        bucket
            .iter()
            .map(|&i| &self.keys[i])
            .find(|k| bool::from(k.secret.as_bytes().ct_eq(presented.as_bytes())))
    }

    /// Everything one attempt's timing depends on (see [`crate::routing::timeouts`]).
    pub fn timeouts(&self, channel: &Channel, facts: &AttemptFacts<'_>) -> Timeouts {
        let inputs = TimeoutInputs {
            provider_timeout: channel.config.preferences.model_timeout.as_ref(),
            global_timeout: self.settings.model_timeout.as_ref(),
            provider_keepalive: channel.config.preferences.keepalive_interval.as_ref(),
            global_keepalive: self.settings.keepalive_interval.as_ref(),
            provider_policy: channel.timeout_policy.as_ref(),
            global_policy: self.settings.timeout_policy.as_ref(),
            env_default: self.settings.default_timeout,
        };
        timeouts::for_attempt(&inputs, facts)
    }

    /// Compile a parsed config. `file` names the config in diagnostics.
    pub fn compile(
        config: &Config,
        file: &str,
        default_timeout: Duration,
    ) -> Result<(Runtime, Vec<Diagnostic>), Vec<Diagnostic>> {
        Self::compile_with_clock(config, file, default_timeout, Arc::new(SystemClock::new()))
    }

    /// As [`Runtime::compile`], with the key pools on the given clock (tests, simulation).
    pub fn compile_with_clock(
        config: &Config,
        file: &str,
        default_timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<(Runtime, Vec<Diagnostic>), Vec<Diagnostic>> {
        Self::compile_inner(config, file, default_timeout, clock, None)
    }

    /// Compile a reloaded config: the key pools of providers whose keys and pool settings did
    /// not change are kept as they are (health, limits, in-flight counts); a changed provider's
    /// new pool inherits the slow state (disabled keys, long blocks) of the keys it keeps.
    pub fn recompile(
        config: &Config,
        file: &str,
        default_timeout: Duration,
        previous: &Runtime,
    ) -> Result<(Runtime, Vec<Diagnostic>), Vec<Diagnostic>> {
        Self::compile_inner(
            config,
            file,
            default_timeout,
            Arc::clone(&previous.key_clock),
            Some(previous),
        )
    }

    fn compile_inner(
        config: &Config,
        file: &str,
        default_timeout: Duration,
        clock: Arc<dyn Clock>,
        previous: Option<&Runtime>,
    ) -> Result<(Runtime, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut warnings = Vec::new();
        let mut errors = Vec::new();

        let global_cooldown = config
            .preferences
            .cooldown_period
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(DEFAULT_COOLDOWN, Duration::from_secs_f64);
        let mut channels = Vec::with_capacity(config.providers.len());
        for (index, p) in config.providers.iter().enumerate() {
            let globals = ChannelDefaults {
                proxy: config.preferences.proxy.as_deref(),
                cooldown: global_cooldown,
            };
            match build_channel(index, p, file, &clock, &globals, previous) {
                Ok((ch, mut w)) => {
                    warnings.append(&mut w);
                    channels.push(Arc::new(ch));
                }
                Err(mut e) => errors.append(&mut e),
            }
        }

        let order = match key_dependency_order(&config.api_keys, file) {
            Ok(order) => order,
            Err(mut e) => {
                errors.append(&mut e);
                return Err(errors);
            }
        };
        let mut compiled: Vec<Option<Arc<ClientKey>>> = vec![None; config.api_keys.len()];
        let single_key = config.api_keys.len() == 1;
        for &i in &order {
            let k = &config.api_keys[i];
            let (routes, model_ids, mut w) =
                resolve_rules(i, k, &config.api_keys, &channels, &compiled, file);
            warnings.append(&mut w);
            let models_body = render_models(&model_ids);
            let is_admin = single_key || k.role.as_deref().is_some_and(|r| r.contains("admin"));
            if k.preferences.enable_moderation
                && routes
                    .get(crate::routing::moderation::MODEL)
                    .is_none_or(|c| c.is_empty())
            {
                warnings.push(Diagnostic::warning(
                    file,
                    k.pos,
                    format!("api_keys[{i}].preferences.ENABLE_MODERATION"),
                    format!(
                        "this key cannot route `{}`: add it to the key's rules (or a provider's models), otherwise requests are not moderated",
                        crate::routing::moderation::MODEL
                    ),
                ));
            }
            if let Some(spec) = &k.preferences.rate_limit
                && has_token_limits(spec)
            {
                warnings.push(Diagnostic::warning(
                    file,
                    k.pos,
                    format!("api_keys[{i}].preferences.rate_limit"),
                    "token limits (tpm, tph, tpd, tpr) are not enforced for client keys; only request windows are",
                ));
            }
            compiled[i] = Some(Arc::new(ClientKey {
                index: i,
                secret: k.api.clone(),
                id: Arc::from(crate::keypool::pool::fingerprint(&k.api).as_str()),
                created_at_ms: k
                    .preferences
                    .created_at
                    .as_deref()
                    .and_then(crate::usage::created_at_ms),
                masked: mask(&k.api),
                role: k.role.clone(),
                is_admin,
                prefs: k.preferences.clone(),
                routes,
                model_ids,
                models_body,
            }));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let keys: Vec<Arc<ClientKey>> = compiled.into_iter().flatten().collect();

        let hasher = RandomState::new();
        let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
        for k in &keys {
            buckets
                .entry(hasher.hash_one(k.secret.as_bytes()))
                .or_default()
                .push(k.index);
        }
        let known_aliases = channels
            .iter()
            .flat_map(|c| c.models.iter().map(|m| m.alias.clone()))
            .collect();
        if let Some(spec) = &config.preferences.rate_limit
            && has_token_limits(spec)
        {
            warnings.push(Diagnostic::warning(
                file,
                Pos::default(),
                "preferences.rate_limit".to_string(),
                "token limits (tpm, tph, tpd) are not enforced for the global client limit; only request windows are",
            ));
        }
        let settings = Settings {
            default_timeout,
            model_timeout: config.preferences.model_timeout.clone(),
            keepalive_interval: config.preferences.keepalive_interval.clone(),
            timeout_policy: config
                .preferences
                .timeout_policy
                .as_ref()
                .map(TimeoutPolicy::from_json),
            max_body_bytes: config
                .preferences
                .max_request_body_bytes
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            media: crate::providers::media::MediaLimits::default(),
            error_triggers: Arc::from(config.preferences.error_triggers.clone()),
            breaker: BreakerSettings::from_env(&|name| std::env::var(name).ok()),
            rate_limit: config.preferences.rate_limit.clone(),
            prices: PriceTable::new(&config.preferences.model_price),
        };
        Ok((
            Runtime {
                channels,
                keys,
                known_aliases,
                settings,
                key_clock: clock,
                key_lookup: KeyLookup { hasher, buckets },
            },
            warnings,
        ))
    }
}

fn has_token_limits(spec: &RateLimitSpec) -> bool {
    let token = |l: &crate::config::schema::RateLimit| {
        !matches!(l.period, crate::config::schema::RatePeriod::Window(_))
    };
    match spec {
        RateLimitSpec::All(limits) => limits.iter().any(token),
        RateLimitSpec::PerModel(entries) => entries.iter().flat_map(|(_, l)| l).any(token),
    }
}

/// Global settings a channel inherits.
struct ChannelDefaults<'a> {
    proxy: Option<&'a str>,
    cooldown: Duration,
}

/// Everything a key pool is built from; equal signatures mean the old pool can be kept.
fn pool_signature(p: &ProviderConfig, flavor: crate::keypool::classify::Flavor) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let prefs = &p.preferences;
    let text = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        p.api,
        p.key_options,
        flavor,
        prefs.api_key_rate_limit,
        prefs.api_key_schedule_algorithm,
        prefs.api_key_cooldown_period,
        prefs.api_key_rate_limit_cooldown_period,
        prefs.api_key_quota_cooldown_period,
        prefs.key_max_inflight,
        prefs.quota_scope,
        p.provider,
    );
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn build_channel(
    index: usize,
    p: &ProviderConfig,
    file: &str,
    clock: &Arc<dyn Clock>,
    globals: &ChannelDefaults<'_>,
    previous: Option<&Runtime>,
) -> Result<(Channel, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut warnings = Vec::new();
    let path = format!("providers[{index}]");
    let forced_engine = match p.engine.as_deref() {
        None => None,
        Some(name) => match Engine::from_name(name) {
            Some(e) => Some(e),
            None => {
                return Err(vec![Diagnostic::error(
                    file,
                    p.pos,
                    format!("{path}.engine"),
                    format!("unknown engine `{name}`"),
                )]);
            }
        },
    };
    let base_url = p.base_url.clone().unwrap_or_default();
    let mut headers = Vec::new();
    let mut errors = Vec::new();
    for (name, value) in &p.preferences.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => errors.push(Diagnostic::error(
                file,
                p.pos,
                format!("{path}.preferences.headers.{name}"),
                "not a valid HTTP header name/value".to_string(),
            )),
        }
    }
    // A broken service account is a warning, not a load error (uni-api loads such configs,
    // e.g. its README's placeholders): the channel answers with the reason instead.
    let mut auth_problem = None;
    let google = match (&p.client_email, &p.private_key) {
        (Some(email), Some(key)) => match GoogleAuth::new(email, key, p.token_uri.as_deref()) {
            Ok(auth) => Some(Arc::new(auth)),
            Err(why) => {
                auth_problem = Some(format!("provider `{}`: {why}", p.provider));
                warnings.push(Diagnostic::warning(
                    file,
                    p.pos,
                    format!("{path}.private_key"),
                    format!("{why}; this provider will not be used"),
                ));
                None
            }
        },
        (Some(_), None) | (None, Some(_)) => {
            let why = "a Vertex service account needs both client_email and private_key";
            auth_problem = Some(format!("provider `{}`: {why}", p.provider));
            warnings.push(Diagnostic::warning(
                file,
                p.pos,
                format!("{path}.client_email"),
                why.to_string(),
            ));
            None
        }
        (None, None) => None,
    };
    let vertex = p.project_id.first().map(|project| VertexTarget {
        project: project.clone(),
        region: p
            .region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "global".to_string()),
    });
    let aws = aws_credentials(p, &base_url);
    let mut passthrough_headers = Vec::new();
    for name in &p.preferences.passthrough_request_headers {
        match HeaderName::try_from(name.trim()) {
            Ok(n) => passthrough_headers.push(n),
            Err(_) => errors.push(Diagnostic::error(
                file,
                p.pos,
                format!("{path}.preferences.passthrough_request_headers"),
                format!("`{name}` is not a valid HTTP header name"),
            )),
        }
    }
    let proxy = p
        .preferences
        .proxy
        .as_deref()
        .or(globals.proxy)
        .map(str::to_string);
    if let Some(url) = &proxy
        && let Err(why) = crate::providers::proxy::ProxySpec::parse(url)
    {
        // A warning, not an error: uni-api's README placeholder must load. The provider is
        // not reached directly instead (that could leak traffic): its attempts fail.
        warnings.push(Diagnostic::warning(
            file,
            p.pos,
            format!("{path}.preferences.proxy"),
            format!("{why}; requests to this provider fail until the proxy is fixed"),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let cooldown = p
        .preferences
        .cooldown_period
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(globals.cooldown, Duration::from_secs_f64);
    let models = p.model.clone().unwrap_or_default();
    if p.model.is_none() {
        warnings.push(Diagnostic::warning(
            file,
            p.pos,
            format!("{path}.model"),
            format!(
                "provider `{}` lists no models: they are discovered from the upstream's models endpoint at start-up",
                p.provider
            ),
        ));
    }
    let flavor = engine::flavor(engine::detect(&base_url, forced_engine, "gpt"), &base_url);
    let specs = p
        .api
        .iter()
        .enumerate()
        .map(|(i, secret)| {
            let opts = p.key_options.get(i).cloned().unwrap_or_default();
            KeySpec {
                secret: secret.clone(),
                scope: opts.scope,
                max_inflight: opts.max_inflight,
            }
        })
        .collect();
    let pool_sig = pool_signature(p, flavor);
    let old = previous.and_then(|rt| rt.channels.iter().find(|c| *c.name == *p.provider));
    let keys = match old {
        Some(old) if old.pool_sig == pool_sig => old.keys.clone(),
        _ => {
            let pool = KeyPool::new(specs, pool_settings(p, flavor), Arc::clone(clock));
            if let Some(old) = old {
                pool.import(&old.keys.export());
            }
            pool
        }
    };
    let key_wait = p
        .preferences
        .key_wait_timeout
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64);
    Ok((
        Channel {
            index,
            name: Arc::from(p.provider.as_str()),
            api_root: urls::api_root(&base_url),
            base_url,
            forced_engine,
            flavor,
            keys,
            key_wait,
            models,
            headers,
            google,
            vertex,
            auth_problem,
            aws,
            passthrough_headers,
            proxy,
            cooldown,
            timeout_policy: p
                .preferences
                .timeout_policy
                .as_ref()
                .map(TimeoutPolicy::from_json),
            pool_sig,
            config: p.clone(),
            endpoint_uris: Default::default(),
        },
        warnings,
    ))
}

/// Bedrock credentials from `aws_access_key` / `aws_secret_key`; the region from `region`, else
/// from the host (`bedrock-runtime.<region>.amazonaws.com`), else `us-east-1`.
fn aws_credentials(
    p: &ProviderConfig,
    base_url: &str,
) -> Option<(crate::auth::sigv4::AwsCredentials, String)> {
    let (access_key, secret_key) = (p.aws_access_key.clone()?, p.aws_secret_key.clone()?);
    let from_host = base_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .and_then(|h| {
            let mut labels = h.split('.');
            (labels.next()? == "bedrock-runtime").then(|| labels.next().map(str::to_string))?
        });
    let region = p
        .region
        .clone()
        .filter(|r| !r.trim().is_empty())
        .or(from_host)
        .unwrap_or_else(|| "us-east-1".to_string());
    Some((
        crate::auth::sigv4::AwsCredentials {
            access_key,
            secret_key,
            session_token: None,
        },
        region,
    ))
}

/// Index of the client key a rule prefix names (`sk-other/...`), if any.
fn key_named(keys: &[ApiKeyConfig], prefix: &str) -> Option<usize> {
    keys.iter().position(|k| k.api == prefix)
}

/// Client keys in an order where every key comes after the keys it uses as channels; a cycle
/// is an error naming the keys (masked) and the rule that closes it.
fn key_dependency_order(keys: &[ApiKeyConfig], file: &str) -> Result<Vec<usize>, Vec<Diagnostic>> {
    let deps: Vec<Vec<(usize, Pos, usize)>> = keys
        .iter()
        .map(|k| {
            k.model
                .iter()
                .enumerate()
                .filter_map(|(ri, r)| {
                    let prefix = r.rule.split_once('/')?.0;
                    key_named(keys, prefix).map(|j| (j, r.pos, ri))
                })
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; keys.len()];
    let mut order = Vec::with_capacity(keys.len());
    let mut errors = Vec::new();
    for start in 0..keys.len() {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&(dep, pos, rule_index)) = deps[node].get(*next) {
                *next += 1;
                match state[dep] {
                    0 => {
                        state[dep] = 1;
                        stack.push((dep, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                        let mut names: Vec<String> = stack[from..]
                            .iter()
                            .map(|&(n, _)| mask(&keys[n].api))
                            .collect();
                        names.push(mask(&keys[dep].api));
                        errors.push(Diagnostic::error(
                            file,
                            pos,
                            format!("api_keys[{node}].model[{rule_index}]"),
                            format!(
                                "client keys used as channels form a cycle: {}",
                                names.join(" -> ")
                            ),
                        ));
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                order.push(node);
                stack.pop();
            }
        }
    }
    if errors.is_empty() {
        Ok(order)
    } else {
        Err(errors)
    }
}

type Routes = (
    hashbrown::HashMap<String, Arc<[Candidate]>>,
    Vec<String>,
    Vec<Diagnostic>,
);

/// Expand one key's rules, in rule order, into alias → ordered candidates.
fn resolve_rules(
    key_index: usize,
    key: &ApiKeyConfig,
    all_keys: &[ApiKeyConfig],
    channels: &[Arc<Channel>],
    compiled: &[Option<Arc<ClientKey>>],
    file: &str,
) -> Routes {
    let mut order: Vec<String> = Vec::new();
    let mut table: HashMap<String, Vec<Candidate>> = HashMap::new();
    let mut warnings = Vec::new();
    let mut add = |c: Candidate, table: &mut HashMap<String, Vec<Candidate>>| {
        let list = table.entry(c.alias.to_string()).or_insert_with(|| {
            order.push(c.alias.to_string());
            Vec::new()
        });
        if !list
            .iter()
            .any(|x| x.channel == c.channel && x.upstream_model == c.upstream_model)
        {
            list.push(c);
        }
    };
    let direct = |ch: &Channel, m: &ModelEntry, weight: Option<u32>| Candidate {
        channel: ch.index,
        alias: Arc::from(m.alias.as_str()),
        upstream_model: Arc::from(m.upstream.as_str()),
        engine: engine::detect(&ch.base_url, ch.forced_engine, &m.upstream),
        weight,
        via_key: None,
    };
    for (ri, rule) in key.model.iter().enumerate() {
        let r = rule.rule.trim();
        let before = table.values().map(Vec::len).sum::<usize>();
        if r == "all" || r == "*" {
            for ch in channels {
                for m in &ch.models {
                    add(direct(ch, m, rule.weight), &mut table);
                }
            }
        } else if let Some(literal) = r.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
            for ch in channels {
                for m in ch.models.iter().filter(|m| m.alias == literal) {
                    add(direct(ch, m, rule.weight), &mut table);
                }
            }
        } else if let Some((prefix, rest)) = r.split_once('/') {
            if let Some(other) = key_named(all_keys, prefix) {
                if let Some(Some(other)) = compiled.get(other) {
                    let aliases: Vec<&String> = if rest == "*" {
                        other.model_ids.iter().collect()
                    } else {
                        other
                            .model_ids
                            .iter()
                            .filter(|a| a.as_str() == rest)
                            .collect()
                    };
                    for alias in aliases {
                        for c in other
                            .routes
                            .get(alias.as_str())
                            .into_iter()
                            .flat_map(|c| c.iter())
                        {
                            let mut c = c.clone();
                            c.weight = rule.weight.or(c.weight);
                            c.via_key = Some(c.via_key.unwrap_or(other.index));
                            add(c, &mut table);
                        }
                    }
                }
            } else if channels.iter().any(|c| &*c.name == prefix) {
                for ch in channels.iter().filter(|c| &*c.name == prefix) {
                    for m in ch.models.iter().filter(|m| rest == "*" || m.alias == rest) {
                        add(direct(ch, m, rule.weight), &mut table);
                    }
                }
            } else {
                warnings.push(Diagnostic::warning(
                    file,
                    rule.pos,
                    format!("api_keys[{key_index}].model[{ri}]"),
                    format!(
                        "rule `{r}`: no provider or client key named `{prefix}`; write `<{r}>` for a model whose name contains '/'"
                    ),
                ));
                continue;
            }
        } else {
            for ch in channels {
                for m in ch.models.iter().filter(|m| m.alias == r) {
                    add(direct(ch, m, rule.weight), &mut table);
                }
            }
        }
        let after = table.values().map(Vec::len).sum::<usize>();
        let discovering = channels.iter().any(|c| c.config.model.is_none());
        if after == before && !discovering {
            warnings.push(Diagnostic::warning(
                file,
                rule.pos,
                format!("api_keys[{key_index}].model[{ri}]"),
                format!("rule `{r}` matches no model of any provider"),
            ));
        }
    }
    let routes = table.into_iter().map(|(k, v)| (k, Arc::from(v))).collect();
    (routes, order, warnings)
}

/// `/v1/models` body, OpenAI list format.
fn render_models(ids: &[String]) -> Bytes {
    #[derive(serde::Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    #[derive(serde::Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    let list = List {
        object: "list",
        data: ids
            .iter()
            .map(|id| Model {
                id,
                object: "model",
                created: 1_720_524_448,
                owned_by: "llmux",
            })
            .collect(),
    };
    Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
}

/// True when some diagnostic is an error.
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}
