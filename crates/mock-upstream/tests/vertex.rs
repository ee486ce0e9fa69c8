//! Vertex AI: the OAuth token endpoint (RS256 service-account assertions),
//! bearer-token checks, and the Gemini and Claude routes behind them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use http::Method;
use mock_upstream::{Endpoint, GoogleServiceAccount, MockOptions, MockServer};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};
use sha2::Sha256;

const EMAIL: &str = "llmux-test@mock-project.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const PROJECT_PATH: &str = "/v1/projects/mock-project/locations/us-east5/publishers";

/// A throwaway test key pair (generated for these tests only).
const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDJFsvtnDpXFOhH\nYKacTdHVreEnTMhmJaB4+yHHQe09lYRty1oMXZl5r9j6vOohQXNVryVkUd/bqhoC\ng4B7+hsnQZKuN4XoilnPgK37srexW5r3y3kD/B3LTM2iCe0UsIE+4yBXxZnT9MRC\n2ckSAiV0mSOLTvBYhxG9wrMUI7rxCHfxh2up95GiDpWH+2itUngaykIxhvwBbxRf\nh4+HFWApXaYZq/0PXHL/uKdFMB1qZHTJyzcu/nhsYo6Ar332IaKan39SyMLvMg6o\nforZiVYCX9jJrXvx+IGLf8fVeVISd3LOh8Q0zlKB8CM60Sd5lf/Jo9oWeh9JXJAU\npgS2z9t9AgMBAAECggEALPqHZL+UIRRRHF4XBlE1xUjeWs8G6Co0absqhApQCX1f\nILviiW+KO7jEnNkSuZuNM7Y4c+cIXnb+2F8XpyN7XV2CdKuArVH84rgSsoD4K5ik\n4hZGHEkRVP754+u6du1AC5P8EQXm8Y0HNTjHi9qlDB6Q38Epa3PS2RIqwi93yh/I\nRajIR3f40w7dS7NlXxkoAnkdKsrz8cOBjkm3FBuwm9cCOBHSN95ki92HUiCVgkr+\nBk1/Aw+V1kZrJ6DsIivuLj5Ultx/z79g0UfEMV1zo5CtP4gtqf1tjmUT6b7Au5Ov\nInNEJZAC32SfEn+TXr5JiCfRkgQhBMpJw3gGgziZIQKBgQDoDRTmD6fqTwpIIOtm\nkNZDmQwgejY/c9ncXdDiUeIgJSGZ4BWoZvAyeWeyH96RlwRZcnPFdcppLpsyXtbS\njuQQ+bcAa5QWwTF/WIFIWmICY1RSiktTjBDoMoX1JadtK1wk/fvyyOXtlppbb7hH\nOfxrszvzb8UuC/P6JAhU3s15BQKBgQDd164yQwF/oPrmlYVzP/HWqdrHRflaV6E1\n8xd9IibAQrD7xdZY9ZoEYBHJyhuAojTX/wBP/cpNIpDdn+Fe4DXTiI4N5HHn6ypX\nLDankvspM6NN8OlkoJk2ZsdQC0zq2iQuOHKx4paRvdDtF/p5WM5U2AT91BCyJSDw\npoVymCkCGQKBgCpQ0GHPsxAwT7CtiB/RA7GaBDMb9i6GAtGDribHRdQU0VbNHUXz\nV5PsvbMmyqCECIADNgdpHnsly5lY4BXPhtltoCiMdZncqxkM266FBOBomqTeoTPg\nE+kz5We58RkgUhJQ2pQAfKVh1E4eRl1+voApVCJlXHC0L06LKZXId3G9AoGAOaII\nzWH/B6tIw5LgwppAN+aUweR57XCKnztyRL4Ulyo8VIyHLUFRLAXRWT06e+aoF91V\ntXJXlkZ+oDUjFcTl9vio/w70UK4Vp+QCpvJWcdPKfzsxR0U5yJpW+YKWDwVxFNjx\nYylcuKw5lP7/wXrCz+P3GAJ5++4Nare4P5csQDECgYEArfzmyp4tvrj+06cg3sUY\n3Xmnj4aIfJ1EjkkijTSGhAo2/e0SyZ5c29pv5iMBKFp3vCZ/XiuU1JXTuc6I0GCk\n+pmj2kcM35t3cwujm9Vw+Ypd7Rz4yh1WwWNghEK1Q1pQ0jtrRkYPJsGdu+Q7BOZ7\nlYePH87+pFofwBUIve17I2c=\n-----END PRIVATE KEY-----";
const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyRbL7Zw6VxToR2CmnE3R\n1a3hJ0zIZiWgePshx0HtPZWEbctaDF2Zea/Y+rzqIUFzVa8lZFHf26oaAoOAe/ob\nJ0GSrjeF6IpZz4Ct+7K3sVua98t5A/wdy0zNogntFLCBPuMgV8WZ0/TEQtnJEgIl\ndJkji07wWIcRvcKzFCO68Qh38YdrqfeRog6Vh/torVJ4GspCMYb8AW8UX4ePhxVg\nKV2mGav9D1xy/7inRTAdamR0ycs3Lv54bGKOgK999iGimp9/UsjC7zIOqH6K2YlW\nAl/Yya178fiBi3/H1XlSEndyzofENM5SgfAjOtEneZX/yaPaFnofSVyQFKYEts/b\nfQIDAQAB\n-----END PUBLIC KEY-----";
/// Another key, not registered: its signatures must be refused.
const OTHER_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDOQxgMGwW0U9p9\njc+hYhPl8HnZbJRjtry56uuXGV3qLxrmzkUcwSDLrJ9eV3iGyx+QoxAm33ra1AWq\nAaOln5cBvShj89MtoPdz8dxfU1VgHyfGWRbmYpohgBEH0hOiMfv4FPQ2ukDV2k/j\ndxy1Kf4TXmcLra2DuihdXEcAHyUxTbZ4euJlC36iumur3PyvD4QX8+Wv5W/yoDff\nWnspGZjTNyroZN4cbq4x7aRHwWT54+fTTlhC+xbUm352kturtNDgOPVbzAZD3trg\njen2W0DzZE/hgU4gRU1Z5SexVpuIa6jrWSVOWEWqhkF7ouCVXDGe+ALc6cHjdhLJ\nzfQ1DynzAgMBAAECggEADgp94JUWVlLpqhJf8q8n25yl2X84EBxTIfTer3KH9Mva\nxkt/DkNiECYNffFGayajXMfnmZMtByiCb4hHs5v26PoPfdO4qdUuAzPmZIwvtlNo\nnxVW0b10m0M0kEEPb8MnUUQGkT3XRreN01Y7G2S4ab52FVLFX7+Ub9vlmW8wAPhs\npWEkWEKuKWiVsPGBTmqE9OjpCJXCvsjCZOSBckX62BjtDzngjaXBOaYZJhapUKJM\ndQfSh5+HyZVKdw9idT+OLSth8+63vZaAOi1sKxV+cXh4jkzKZjG4njvc2MjfEdoo\n2xiFZnXeHe3fdtMCosji+MJp9TK91Le0GSl1xHluAQKBgQD14PC5WtqD97bsDrL4\n+57Ijq45LUtZux4Wgue+7AuoaJNQRqN3XjhpS3R/rioiFeyxPh6KunsZbXRGz7S6\n1oO/A2zyYqHOqHrzX/L6Xe4iBwoA669Ps9lGqfJsm99hyGPdPqRhXwYt+ohmpdA5\nH0k+MMqd+rJKR/MQo1ZtBZUSoQKBgQDWwKzzGMi2CLuhpj0DPxRr/9S2EITuoVlc\nGhntRkS7bfFxzjEeFiRHE6cKf+UHaB6NiSii33MEYL21Vh7rxooVQ4kxYJEkFGA0\nR1uuYWWwMn9gKzkWlQqfGKlpQiADbN7v8cqeWcl9iG/Zpck8eYtaKhTBVEB5eYe0\nhSwmv9HIEwKBgQDnihrGQYMy8MumAbWR98kvzgTMvRWO+0E7K6y2Qqw7u7a1yr9W\nwjhXF4IuVkFA9ep9giTauP8BE+yCXkgwBZ/s+XnXyv/ajxexJbK3CEseagiGk2r0\noEVEYPd0RViXSVCZYMsFEqnMFHfsScsKb6bWVLYJDLJmdtiy202gvrgB4QKBgEmv\njOhQrbXAI1lg5/hwMXqpKnxaCLK0jCvNDO5cOQMywzCwdiwDnukAdkVlAtnawPkB\ngf74usdaxl0tMqjl08VeCfn2T3bYwvXNMkkQREsD2K7PxePYue9DEAX82W0zcv9T\nsJlK55b6NJ6ygu0MK2OBouN/HCxSJd0sAK0/DiUfAoGBAMnTcf67ruhunYglNq1V\nk/G25KgeYTKNyOutjEXZA23LDRz1MbUX5bdRgZoS1wFbMhPszy0bsDHX9ROvAlm6\nkqPqBOcjIWCNg/PTGyXCVXo7VrBRoW2tVOLXUGnMVHBLrfmNlMML8LAM8c1nEYyt\nEdz9qXC4889tFF8eChMyPk7p\n-----END PRIVATE KEY-----";

async fn server() -> MockServer {
    MockServer::start(MockOptions {
        google_service_accounts: vec![GoogleServiceAccount::from_pem(EMAIL, PUBLIC_PEM)],
        api_keys: vec!["AIza-express".to_owned()],
        ..MockOptions::default()
    })
    .await
    .unwrap()
}

/// base64url without padding (test-side).
fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt(pem: &str, header: &Value, claims: &Value) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
    let signing = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = SigningKey::<Sha256>::new(key).sign(signing.as_bytes());
    format!("{signing}.{}", b64url(&sig.to_bytes()))
}

fn claims(server: &MockServer) -> Value {
    let t = now();
    json!({"iss": EMAIL, "scope": SCOPE, "aud": format!("{}/token", server.root_url()), "iat": t, "exp": t + 3600})
}

fn rs256() -> Value {
    json!({"alg": "RS256", "typ": "JWT"})
}

async fn token_request(server: &MockServer, assertion: &str) -> Resp {
    let form = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
    );
    request(
        Method::POST,
        &format!("{}/token", server.root_url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        form,
    )
    .await
}

async fn token(server: &MockServer) -> String {
    let r = token_request(server, &jwt(PRIVATE_PEM, &rs256(), &claims(server))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["access_token"].as_str().unwrap().to_owned()
}

async fn vertex(server: &MockServer, token: Option<&str>, path: &str, body: Value) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    call(server, Method::POST, path, &headers, body).await
}

fn gemini_body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

#[tokio::test]
async fn a_signed_assertion_buys_a_token_that_opens_vertex() {
    let server = server().await;
    let r = token_request(&server, &jwt(PRIVATE_PEM, &rs256(), &claims(&server))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let access = v["access_token"].as_str().unwrap();
    assert!(access.starts_with("ya29.mock-"), "{access}");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(server.google_token_requests(), 1);
    // Google's own token URI is a valid audience too.
    let mut c = claims(&server);
    c["aud"] = json!("https://oauth2.googleapis.com/token");
    assert_eq!(
        token_request(&server, &jwt(PRIVATE_PEM, &rs256(), &c))
            .await
            .status,
        200
    );

    let path = format!("{PROJECT_PATH}/google/models/gemini-2.5-flash:generateContent");
    let r = vertex(&server, Some(access), &path, gemini_body("Hello Vertex")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: Hello Vertex"
    );
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 3);
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::VertexGenerateContent);
    assert_eq!(rec.model().as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(rec.bearer(), Some(access));

    let path =
        format!("{PROJECT_PATH}/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse");
    let r = vertex(
        &server,
        Some(access),
        &path,
        gemini_body("one two three four"),
    )
    .await;
    assert_eq!(r.status, 200);
    let chunks = gemini_sse(&r.body);
    let text: String = chunks
        .iter()
        .map(|c| {
            c["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "You said: one two three four");
    assert_eq!(
        server.requests().pop().unwrap().endpoint,
        Endpoint::VertexStreamGenerateContent
    );
    // Unknown models are Vertex's 404.
    let path = format!("{PROJECT_PATH}/google/models/nope-1:generateContent");
    let r = vertex(&server, Some(access), &path, gemini_body("x")).await;
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"].as_str().unwrap().starts_with("Publisher Model `projects/mock-project/locations/us-east5/publishers/google/models/nope-1` was not found"));
}

#[tokio::test]
async fn bad_assertions_get_googles_oauth_errors() {
    let server = server().await;
    let cases: Vec<(String, &str, &str)> = vec![
        (
            jwt(OTHER_PEM, &rs256(), &claims(&server)),
            "invalid_grant",
            "Invalid JWT Signature.",
        ),
        (
            jwt(PRIVATE_PEM, &json!({"alg": "HS256"}), &claims(&server)),
            "invalid_grant",
            "Invalid JWT Signature.",
        ),
        (
            {
                let mut c = claims(&server);
                c["iss"] = json!("nobody@else.iam.gserviceaccount.com");
                jwt(PRIVATE_PEM, &rs256(), &c)
            },
            "invalid_grant",
            "Invalid grant: account not found",
        ),
        (
            {
                let mut c = claims(&server);
                c["scope"] = json!("https://www.googleapis.com/auth/drive");
                jwt(PRIVATE_PEM, &rs256(), &c)
            },
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ),
        (
            {
                let mut c = claims(&server);
                c["exp"] = json!(now() + 7200);
                jwt(PRIVATE_PEM, &rs256(), &c)
            },
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        ),
        (
            {
                let mut c = claims(&server);
                c["aud"] = json!("https://example.com/token");
                jwt(PRIVATE_PEM, &rs256(), &c)
            },
            "invalid_grant",
            "Invalid JWT: Failed audience check.",
        ),
    ];
    for (assertion, error, description) in cases {
        let r = token_request(&server, &assertion).await;
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"], error, "{v}");
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .starts_with(description),
            "{v}"
        );
    }
    let r = request(
        Method::POST,
        &format!("{}/token", server.root_url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    assert_eq!(server.google_token_requests(), 7);
}

#[tokio::test]
async fn vertex_refuses_missing_unknown_and_expired_tokens() {
    let server = server().await;
    let path = format!("{PROJECT_PATH}/google/models/gemini-2.5-flash:generateContent");
    let r = vertex(&server, None, &path, gemini_body("x")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(
        r.json()["error"]["details"][0]["reason"],
        "CREDENTIALS_MISSING"
    );
    let r = vertex(&server, Some("ya29.forged"), &path, gemini_body("x")).await;
    assert_eq!(r.status, 401);
    let access = token(&server).await;
    assert_eq!(
        vertex(&server, Some(&access), &path, gemini_body("x"))
            .await
            .status,
        200
    );
    server.expire_google_tokens();
    let r = vertex(&server, Some(&access), &path, gemini_body("x")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_EXPIRED"
    );
    // An API key does not open the project routes.
    let r = call(
        &server,
        Method::POST,
        &path,
        &[("x-goog-api-key", "AIza-express")],
        gemini_body("x"),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn express_mode_takes_an_api_key() {
    let server = server().await;
    let path = "/v1/publishers/google/models/gemini-2.5-flash:generateContent";
    let r = call(
        &server,
        Method::POST,
        path,
        &[("x-goog-api-key", "AIza-express")],
        gemini_body("hi express"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["candidates"][0]["content"]["parts"][0]["text"],
        "You said: hi express"
    );
    assert_eq!(
        server.requests().pop().unwrap().endpoint,
        Endpoint::VertexExpressGenerateContent
    );
    let r = call(
        &server,
        Method::POST,
        path,
        &[("x-goog-api-key", "AIza-wrong")],
        gemini_body("x"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    let r = call(&server, Method::POST, path, &[], gemini_body("x")).await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn claude_on_vertex_takes_the_model_from_the_path() {
    let server = server().await;
    let access = token(&server).await;
    let path = format!("{PROJECT_PATH}/anthropic/models/claude-sonnet-4@20250514:rawPredict");
    let body = json!({
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello Claude"}],
    });
    let r = vertex(&server, Some(&access), &path, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "claude-sonnet-4@20250514");
    assert_eq!(v["content"][0]["text"], "You said: Hello Claude");
    assert_eq!(v["usage"]["input_tokens"], 3);
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::VertexRawPredict);
    assert_eq!(rec.model().as_deref(), Some("claude-sonnet-4@20250514"));
    // A `model` field is not Vertex's.
    let mut with_model = body.clone();
    with_model["model"] = json!("claude-sonnet-4");
    let r = vertex(&server, Some(&access), &path, with_model).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["message"],
        "model: Extra inputs are not permitted"
    );
    let mut no_version = body.clone();
    no_version
        .as_object_mut()
        .unwrap()
        .remove("anthropic_version");
    let r = vertex(&server, Some(&access), &path, no_version).await;
    assert_eq!(
        r.json()["error"]["message"],
        "anthropic_version: Field required"
    );
    let mut wrong = body.clone();
    wrong["anthropic_version"] = json!("2023-06-01");
    let r = vertex(&server, Some(&access), &path, wrong).await;
    assert_eq!(
        r.json()["error"]["message"],
        "anthropic_version: Input should be 'vertex-2023-10-16'"
    );
    // streamRawPredict streams Anthropic's SSE.
    let path = format!("{PROJECT_PATH}/anthropic/models/claude-sonnet-4@20250514:streamRawPredict");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = vertex(&server, Some(&access), &path, streamed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let events = named_events(&r.body);
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "message_stop");
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: Hello Claude");
    // Auth failures on the Claude routes are Google's, not Anthropic's.
    let r = vertex(&server, Some("ya29.nope"), &path, body).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["status"], "UNAUTHENTICATED");
}
