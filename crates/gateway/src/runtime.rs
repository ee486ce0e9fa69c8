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
use crate::config::schema::{
    ApiKeyConfig, ApiKeyPreferences, Config, ModelEntry, PerModel, Pos, ProviderConfig,
};
use crate::config::{Diagnostic, Severity};
use crate::keypool::clock::{Clock, SystemClock};
use crate::keypool::{Algorithm, KeyPool, KeySpec, PoolSettings};
use crate::providers::engine::{self, Engine};
use crate::providers::urls;
use crate::secret::mask;

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
    pub max_body_bytes: u64,
    /// Fetching image URLs for upstreams that need inline bytes.
    pub media: crate::providers::media::MediaLimits,
}

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
    }
}

#[derive(Debug)]
pub struct Channel {
    pub index: usize,
    pub name: String,
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
    pub config: ProviderConfig,
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
    pub masked: String,
    pub role: Option<String>,
    pub is_admin: bool,
    pub prefs: ApiKeyPreferences,
    routes: HashMap<String, Arc<[Candidate]>>,
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

    /// uni-api's timeout rule: the provider's map (alias, then upstream name), then the global
    /// map, then `TIMEOUT`. Within a map: exact key, first substring key, `default`.
    pub fn timeout_for(&self, channel: &Channel, alias: &str, upstream: &str) -> Duration {
        let secs = channel
            .config
            .preferences
            .model_timeout
            .as_ref()
            .and_then(|t| per_model_lookup(t, alias).or_else(|| per_model_lookup(t, upstream)))
            .or_else(|| {
                self.settings.model_timeout.as_ref().and_then(|t| {
                    per_model_lookup(t, alias).or_else(|| per_model_lookup(t, upstream))
                })
            });
        match secs {
            Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s),
            _ => self.settings.default_timeout,
        }
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
        let mut warnings = Vec::new();
        let mut errors = Vec::new();

        let mut channels = Vec::with_capacity(config.providers.len());
        for (index, p) in config.providers.iter().enumerate() {
            match build_channel(index, p, file, &clock) {
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
            compiled[i] = Some(Arc::new(ClientKey {
                index: i,
                secret: k.api.clone(),
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
        let settings = Settings {
            default_timeout,
            model_timeout: config.preferences.model_timeout.clone(),
            max_body_bytes: config
                .preferences
                .max_request_body_bytes
                .unwrap_or(DEFAULT_MAX_BODY_BYTES),
            media: crate::providers::media::MediaLimits::default(),
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

fn per_model_lookup(table: &PerModel<f64>, model: &str) -> Option<f64> {
    match table {
        PerModel::All(v) => Some(*v),
        PerModel::Map(entries) => {
            let lower = model.to_ascii_lowercase();
            entries
                .iter()
                .find(|(k, _)| *k == lower || k == model)
                .or_else(|| {
                    entries
                        .iter()
                        .find(|(k, _)| k != "default" && lower.contains(k.as_str()))
                })
                .or_else(|| entries.iter().find(|(k, _)| k == "default"))
                .map(|(_, v)| *v)
        }
    }
}

fn build_channel(
    index: usize,
    p: &ProviderConfig,
    file: &str,
    clock: &Arc<dyn Clock>,
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
    if !errors.is_empty() {
        return Err(errors);
    }
    let vertex = p.project_id.first().map(|project| VertexTarget {
        project: project.clone(),
        region: p
            .region
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "global".to_string()),
    });
    let aws = aws_credentials(p, &base_url);
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
    let keys = KeyPool::new(specs, pool_settings(p, flavor), Arc::clone(clock));
    let key_wait = p
        .preferences
        .key_wait_timeout
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(10), Duration::from_secs_f64);
    Ok((
        Channel {
            index,
            name: p.provider.clone(),
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
            config: p.clone(),
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
    HashMap<String, Arc<[Candidate]>>,
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
            } else if channels.iter().any(|c| c.name == prefix) {
                for ch in channels.iter().filter(|c| c.name == prefix) {
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
