"""Checks the mock's rate-limit behaviour with the official SDKs.

Run by tests/python_sdk_limits.rs, which starts one mock per flavour and
passes their base URLs:

    OPENAI_BASE   OpenAI flavour; scope org-sdk {sk-one: rpm=1}, scope org-fast {sk-fast: rpm=120}
    GROQ_BASE     Groq flavour;   scope org_01sdk {gsk-one: rpm=1, rpd=50}
    AZURE_BASE    Azure flavour;  scope aoai-sdk {az-one: rpm=6}
    GEMINI_BASE   Gemini flavour; scope projects/sdk {AIza-one: rpm=1}, AIza-revoked revoked
    ANTHROPIC_BASE  OpenAI flavour, /v1/messages; scope org-ant {sk-ant: rpm=1}, sk-ant-dead revoked
    BUSY_BASE     a mock in a permanent overload storm

Prints OK on success.
"""

import json
import os
import time
import urllib.error
import urllib.request

import anthropic
import httpx2
import openai
from google.genai import errors as genai_errors

MSG = [{"role": "user", "content": "hi"}]


def oai(base, key, retries=0):
    return openai.OpenAI(base_url=base, api_key=key, max_retries=retries)


# --- OpenAI: RateLimitError with the documented fields and headers.
c = oai(os.environ["OPENAI_BASE"], "sk-one")
raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
assert raw.headers["openai-organization"] == "org-sdk"
assert raw.headers["x-ratelimit-limit-requests"] == "1"
assert raw.headers["x-ratelimit-remaining-requests"] == "0"
try:
    c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    raise AssertionError("expected a 429")
except openai.RateLimitError as e:
    assert e.status_code == 429
    assert e.code == "rate_limit_exceeded" and e.type == "requests", (e.code, e.type)
    assert "in organization org-sdk on requests per min (RPM): Limit 1, Used 1, Requested 1." in e.message, e.message
    ms = int(e.response.headers["retry-after-ms"])
    assert 59_000 <= ms <= 60_000, ms

# The SDK honours retry-after-ms: with RPM 120 the retry lands 0.5 s later.
fast = oai(os.environ["OPENAI_BASE"], "sk-fast", retries=2)
for _ in range(120):
    fast.with_options(max_retries=0).chat.completions.create(model="gpt-4o-mini", messages=MSG)
t0 = time.monotonic()
r = fast.chat.completions.create(model="gpt-4o-mini", messages=MSG)
waited = time.monotonic() - t0
assert r.choices[0].message.content == "You said: hi"
assert 0.2 <= waited < 5, waited

# --- Groq flavour through the OpenAI SDK (Groq's API is OpenAI-compatible).
g = oai(os.environ["GROQ_BASE"], "gsk-one")
raw = g.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
assert raw.headers["x-ratelimit-limit-requests"] == "50"  # RPD
assert "retry-after" not in raw.headers
try:
    g.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    raise AssertionError("expected a 429")
except openai.RateLimitError as e:
    assert e.code == "rate_limit_exceeded"
    assert "service tier `on_demand` on requests per minute (RPM)" in e.message, e.message
    assert "retry-after" in e.response.headers and "retry-after-ms" not in e.response.headers

# --- Azure flavour through the SDK's Azure client.
az = openai.AzureOpenAI(
    azure_endpoint=os.environ["AZURE_BASE"].removesuffix("/v1"),
    api_key="az-one",
    api_version="2024-10-21",
    max_retries=0,
)
# The SDK posts to /openai/deployments/gpt-4o-mini/chat/completions.
r = az.chat.completions.create(model="gpt-4o-mini", messages=MSG)
assert r.choices[0].message.content == "You said: hi", r
assert r.prompt_filter_results[0]["content_filter_results"]["hate"]["severity"] == "safe"
req = urllib.request.Request(
    os.environ["AZURE_BASE"] + "/chat/completions?api-version=2024-10-21",
    data=json.dumps({"model": "gpt-4o-mini", "messages": MSG}).encode(),
    headers={"api-key": "az-one", "content-type": "application/json"},
)
try:
    urllib.request.urlopen(req).read()
    raise AssertionError("expected a 429")
except urllib.error.HTTPError as e:
    assert e.code == 429
    body = json.loads(e.read())
    assert body["error"]["code"] == "429"
    assert "have exceeded call rate limit of your current OpenAI S0 pricing tier" in body["error"]["message"]
    assert int(e.headers["retry-after-ms"]) <= 10_000

# --- Gemini: the 429 and the invalid-key 400 parse as google-genai errors.
def gemini_error(key):
    req = urllib.request.Request(
        os.environ["GEMINI_BASE"] + "/chat/completions",
        data=json.dumps({"model": "gemini-2.0-flash", "messages": MSG}).encode(),
        headers={"x-goog-api-key": key, "content-type": "application/json"},
    )
    try:
        return urllib.request.urlopen(req).status, None
    except urllib.error.HTTPError as e:
        resp = httpx2.Response(e.code, content=e.read(), headers=dict(e.headers))
        try:
            genai_errors.APIError.raise_for_response(resp)
        except genai_errors.APIError as err:
            return e.code, err
        raise AssertionError("google-genai did not raise")

status, _ = gemini_error("AIza-one")
assert status == 200
status, err = gemini_error("AIza-one")
assert isinstance(err, genai_errors.ClientError), type(err)
assert (err.code, err.status) == (429, "RESOURCE_EXHAUSTED"), (err.code, err.status)
details = err.details["error"]["details"]
quota = next(d for d in details if d["@type"].endswith("QuotaFailure"))
assert quota["violations"][0]["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
retry = next(d for d in details if d["@type"].endswith("RetryInfo"))
assert retry["retryDelay"].endswith("s")
assert "Please retry in " in err.message
status, err = gemini_error("AIza-revoked")
assert (err.code, err.status) == (400, "INVALID_ARGUMENT")
assert err.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"

# --- Anthropic SDK against /v1/messages.
a = anthropic.Anthropic(base_url=os.environ["ANTHROPIC_BASE"].removesuffix("/v1"), api_key="sk-ant", max_retries=0)
raw = a.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=64, messages=MSG)
m = raw.parse()
assert m.content[0].text == "You said: hi", m
assert m.usage.input_tokens == 1 and m.usage.output_tokens == 3, m.usage
assert raw.headers["anthropic-organization-id"] == "org-ant"
assert raw.headers["anthropic-ratelimit-requests-remaining"] == "0"
assert raw.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
try:
    a.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MSG)
    raise AssertionError("expected a 429")
except anthropic.RateLimitError as e:
    assert e.body["error"]["type"] == "rate_limit_error", e.body
    assert e.request_id and e.request_id.startswith("req_011C"), e.request_id
    assert 59 <= int(e.response.headers["retry-after"]) <= 60
try:
    anthropic.Anthropic(
        base_url=os.environ["ANTHROPIC_BASE"].removesuffix("/v1"), api_key="sk-ant-dead", max_retries=0
    ).messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MSG)
    raise AssertionError("expected a 401")
except anthropic.AuthenticationError as e:
    assert e.body["error"]["message"] == "invalid x-api-key"
try:
    anthropic.Anthropic(
        base_url=os.environ["BUSY_BASE"].removesuffix("/v1"), api_key="sk-ant-busy", max_retries=0
    ).messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MSG)
    raise AssertionError("expected a 529")
except anthropic.OverloadedError as e:
    assert e.status_code == 529 and e.body["error"]["type"] == "overloaded_error"
try:
    oai(os.environ["BUSY_BASE"], "sk-busy").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    raise AssertionError("expected a 503")
except openai.InternalServerError as e:
    assert e.status_code == 503
    assert e.body["message"] == "The engine is currently overloaded, please try again later", e.body

print("OK")
