//! Gemini's request parsing, as strict as Google's JSON-to-protobuf front
//! end: unknown field names, lists where a single value belongs, bad enum
//! names and malformed base64 are all reported, each as Google words it,
//! with the field path in protobuf (snake_case) spelling:
//! `Invalid JSON payload received. Unknown name "additionalProperties" at
//! 'tools[0].function_declarations[0].parameters': Cannot find field.`
//!
//! Known fields are those of the Gemini Developer API's v1beta messages
//! (as the official `google-genai` SDK sends them); both the JSON
//! (camelCase) and the protobuf (snake_case) spelling are accepted.

use crate::ordered_json::OValue;
use crate::util::base64_decode;

#[derive(Clone, Copy)]
enum Kind {
    /// Strings, numbers, booleans: not checked further.
    Scalar,
    /// `bytes`: base64.
    Bytes,
    Enum(&'static EnumDef),
    Msg(&'static Msg),
    /// `google.protobuf.Struct` / `Value` and messages the mock does not
    /// model: anything goes.
    Any,
    /// `map<string, Msg>`: entries are reported as `name[i].value`.
    MapOf(&'static Msg),
}

struct Field {
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

struct Msg {
    type_name: &'static str,
    fields: &'static [Field],
}

struct EnumDef {
    type_name: &'static str,
    values: &'static [&'static str],
}

const fn one(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        repeated: false,
    }
}

const fn many(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        repeated: true,
    }
}

use Kind::{Any, Bytes, Scalar};

static TYPE: EnumDef = EnumDef {
    type_name: "google.ai.generativelanguage.v1beta.Type",
    values: &[
        "TYPE_UNSPECIFIED",
        "STRING",
        "NUMBER",
        "INTEGER",
        "BOOLEAN",
        "ARRAY",
        "OBJECT",
        "NULL",
    ],
};

static MODE: EnumDef = EnumDef {
    type_name: "google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode",
    values: &["MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"],
};

static SCHEMA: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.Schema",
    fields: &[
        one("type", Kind::Enum(&TYPE)),
        one("format", Scalar),
        one("title", Scalar),
        one("description", Scalar),
        one("nullable", Scalar),
        many("enum", Scalar),
        one("maxItems", Scalar),
        one("minItems", Scalar),
        one("properties", Kind::MapOf(&SCHEMA)),
        many("required", Scalar),
        one("minProperties", Scalar),
        one("maxProperties", Scalar),
        one("minLength", Scalar),
        one("maxLength", Scalar),
        one("pattern", Scalar),
        one("example", Any),
        many("anyOf", Kind::Msg(&SCHEMA)),
        many("propertyOrdering", Scalar),
        one("default", Any),
        one("items", Kind::Msg(&SCHEMA)),
        one("minimum", Scalar),
        one("maximum", Scalar),
    ],
};

static BLOB: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.Blob",
    fields: &[one("mimeType", Scalar), one("data", Bytes)],
};

static FILE_DATA: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.FileData",
    fields: &[one("mimeType", Scalar), one("fileUri", Scalar)],
};

static FUNCTION_CALL: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.FunctionCall",
    fields: &[one("id", Scalar), one("name", Scalar), one("args", Any)],
};

static FUNCTION_RESPONSE: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.FunctionResponse",
    fields: &[
        one("id", Scalar),
        one("name", Scalar),
        one("response", Any),
        one("willContinue", Scalar),
        one("scheduling", Scalar),
        many("parts", Any),
    ],
};

static PART: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.Part",
    fields: &[
        one("text", Scalar),
        one("inlineData", Kind::Msg(&BLOB)),
        one("fileData", Kind::Msg(&FILE_DATA)),
        one("functionCall", Kind::Msg(&FUNCTION_CALL)),
        one("functionResponse", Kind::Msg(&FUNCTION_RESPONSE)),
        one("thought", Scalar),
        one("thoughtSignature", Bytes),
        one("executableCode", Any),
        one("codeExecutionResult", Any),
        one("videoMetadata", Any),
        one("partMetadata", Any),
        one("mediaResolution", Any),
        one("toolCall", Any),
        one("toolResponse", Any),
    ],
};

static CONTENT: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.Content",
    fields: &[one("role", Scalar), many("parts", Kind::Msg(&PART))],
};

static FUNCTION_DECLARATION: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.FunctionDeclaration",
    fields: &[
        one("name", Scalar),
        one("description", Scalar),
        one("behavior", Scalar),
        one("parameters", Kind::Msg(&SCHEMA)),
        one("parametersJsonSchema", Any),
        one("response", Kind::Msg(&SCHEMA)),
        one("responseJsonSchema", Any),
    ],
};

static TOOL: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.Tool",
    fields: &[
        many("functionDeclarations", Kind::Msg(&FUNCTION_DECLARATION)),
        one("googleSearch", Any),
        one("googleSearchRetrieval", Any),
        one("codeExecution", Any),
        one("urlContext", Any),
        one("computerUse", Any),
        one("fileSearch", Any),
        one("googleMaps", Any),
        many("mcpServers", Any),
    ],
};

static FUNCTION_CALLING_CONFIG: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.FunctionCallingConfig",
    fields: &[
        one("mode", Kind::Enum(&MODE)),
        many("allowedFunctionNames", Scalar),
    ],
};

static TOOL_CONFIG: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.ToolConfig",
    fields: &[
        one("functionCallingConfig", Kind::Msg(&FUNCTION_CALLING_CONFIG)),
        one("retrievalConfig", Any),
        one("includeServerSideToolInvocations", Scalar),
    ],
};

static SAFETY_SETTING: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.SafetySetting",
    fields: &[one("category", Scalar), one("threshold", Scalar)],
};

static THINKING_CONFIG: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.ThinkingConfig",
    fields: &[
        one("includeThoughts", Scalar),
        one("thinkingBudget", Scalar),
        one("thinkingLevel", Scalar),
    ],
};

static GENERATION_CONFIG: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.GenerationConfig",
    fields: &[
        one("candidateCount", Scalar),
        many("stopSequences", Scalar),
        one("maxOutputTokens", Scalar),
        one("temperature", Scalar),
        one("topP", Scalar),
        one("topK", Scalar),
        one("seed", Scalar),
        one("presencePenalty", Scalar),
        one("frequencyPenalty", Scalar),
        one("responseLogprobs", Scalar),
        one("logprobs", Scalar),
        one("enableEnhancedCivicAnswers", Scalar),
        one("responseMimeType", Scalar),
        one("responseSchema", Kind::Msg(&SCHEMA)),
        one("responseJsonSchema", Any),
        many("responseModalities", Scalar),
        one("speechConfig", Any),
        one("thinkingConfig", Kind::Msg(&THINKING_CONFIG)),
        one("imageConfig", Any),
        one("mediaResolution", Scalar),
    ],
};

static GENERATE_CONTENT_REQUEST: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.GenerateContentRequest",
    fields: &[
        one("model", Scalar),
        many("contents", Kind::Msg(&CONTENT)),
        many("tools", Kind::Msg(&TOOL)),
        one("toolConfig", Kind::Msg(&TOOL_CONFIG)),
        many("safetySettings", Kind::Msg(&SAFETY_SETTING)),
        one("systemInstruction", Kind::Msg(&CONTENT)),
        one("generationConfig", Kind::Msg(&GENERATION_CONFIG)),
        one("cachedContent", Scalar),
        one("serviceTier", Scalar),
        one("store", Scalar),
    ],
};

static COUNT_TOKENS_REQUEST: Msg = Msg {
    type_name: "google.ai.generativelanguage.v1beta.CountTokensRequest",
    fields: &[
        many("contents", Kind::Msg(&CONTENT)),
        one(
            "generateContentRequest",
            Kind::Msg(&GENERATE_CONTENT_REQUEST),
        ),
    ],
};

/// One problem Google would report: (field path, description).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    pub field: String,
    pub description: String,
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at '{path}'")
    }
}

struct Walker {
    out: Vec<Violation>,
}

impl Walker {
    fn push(&mut self, field: &str, description: String) {
        self.out.push(Violation {
            field: field.to_owned(),
            description,
        });
    }

    fn message(&mut self, msg: &Msg, fields: &[(String, OValue)], path: &str) {
        for (key, value) in fields {
            let Some(field) = msg
                .fields
                .iter()
                .find(|f| f.name == key || snake(f.name) == *key)
            else {
                self.push(
                    path,
                    format!(
                        "Invalid JSON payload received. Unknown name \"{key}\"{}: Cannot find field.",
                        at(path)
                    ),
                );
                continue;
            };
            let here = join(path, &snake(field.name));
            match value {
                OValue::Null => {}
                OValue::Arr(items) if field.repeated => {
                    for (i, item) in items.iter().enumerate() {
                        self.value(field.kind, item, &format!("{here}[{i}]"));
                    }
                }
                OValue::Arr(_) if !matches!(field.kind, Kind::Any) => self.push(
                    path,
                    format!(
                        "Invalid JSON payload received. Unknown name \"{key}\"{}: Proto field is not repeating, cannot start list.",
                        at(path)
                    ),
                ),
                // A single value for a repeated field is not modelled.
                _ if field.repeated => {}
                other => self.value(field.kind, other, &here),
            }
        }
    }

    fn value(&mut self, kind: Kind, value: &OValue, path: &str) {
        match (kind, value) {
            (Kind::Scalar | Kind::Any, _) | (_, OValue::Null) => {}
            (Kind::Msg(msg), OValue::Obj(fields)) => self.message(msg, fields, path),
            (Kind::Msg(msg), other) => self.push(
                path,
                format!(
                    "Invalid value at '{path}' (type.googleapis.com/{}), {}",
                    msg.type_name,
                    other.quoted()
                ),
            ),
            (Kind::MapOf(msg), OValue::Obj(entries)) => {
                for (i, (_, entry)) in entries.iter().enumerate() {
                    self.value(Kind::Msg(msg), entry, &format!("{path}[{i}].value"));
                }
            }
            (Kind::MapOf(_), _) => {}
            (Kind::Enum(def), OValue::Str(s)) => {
                if !def.values.iter().any(|v| v.eq_ignore_ascii_case(s)) {
                    self.push(
                        path,
                        format!(
                            "Invalid value at '{path}' (type.googleapis.com/{}), {}",
                            def.type_name,
                            value.quoted()
                        ),
                    );
                }
            }
            (Kind::Enum(_), _) => {}
            (Kind::Bytes, OValue::Str(s)) => {
                if base64_decode(s).is_none() {
                    self.push(
                        path,
                        format!(
                            "Invalid value at '{path}' (TYPE_BYTES), Base64 decoding failed for {}",
                            value.quoted()
                        ),
                    );
                }
            }
            (Kind::Bytes, _) => {}
        }
    }
}

fn check(root: &Msg, body: &OValue) -> Vec<Violation> {
    let mut w = Walker { out: Vec::new() };
    if let OValue::Obj(fields) = body {
        w.message(root, fields, "");
    }
    w.out
}

/// Violations in a `generateContent` / `streamGenerateContent` body.
pub(crate) fn check_generate(body: &OValue) -> Vec<Violation> {
    check(&GENERATE_CONTENT_REQUEST, body)
}

/// Violations in a `countTokens` body.
pub(crate) fn check_count_tokens(body: &OValue) -> Vec<Violation> {
    check(&COUNT_TOKENS_REQUEST, body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn violations(json: &str) -> Vec<String> {
        check_generate(&OValue::parse(json.as_bytes()).unwrap())
            .into_iter()
            .map(|v| v.description)
            .collect()
    }

    #[test]
    fn unknown_names_with_protobuf_paths() {
        let v = violations(
            r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],
                "tools":[{"function_declarations":[{"name":"f","parameters":{
                  "type":"object","additionalProperties":false,
                  "properties":{"a":{"type":"string"},"b":{"type":"array","items":{"type":"string","const":"x"}}}}}]}],
                "temperature":0.5}"#,
        );
        assert_eq!(
            v,
            [
                "Invalid JSON payload received. Unknown name \"additionalProperties\" at 'tools[0].function_declarations[0].parameters': Cannot find field.",
                "Invalid JSON payload received. Unknown name \"const\" at 'tools[0].function_declarations[0].parameters.properties[1].value.items': Cannot find field.",
                "Invalid JSON payload received. Unknown name \"temperature\": Cannot find field.",
            ]
        );
    }

    #[test]
    fn lists_enums_and_bytes() {
        let v = violations(
            r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"image/png","data":"data:image/png;base64,AAAA"}}]}],
                "tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"x":{"type":["string","null"]}}}}]}],
                "toolConfig":{"functionCallingConfig":{"mode":"SOMETIMES"}}}"#,
        );
        assert_eq!(
            v,
            [
                "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"data:image/png;base64,AAAA\"",
                "Invalid JSON payload received. Unknown name \"type\" at 'tools[0].function_declarations[0].parameters.properties[0].value': Proto field is not repeating, cannot start list.",
                "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"SOMETIMES\"",
            ]
        );
    }

    #[test]
    fn valid_requests_pass() {
        assert!(
            violations(
                r#"{"contents":[{"role":"user","parts":[{"text":"hi"},{"inline_data":{"mime_type":"image/png","data":"iVBORw0KGgo="}}]}],
                    "systemInstruction":{"parts":[{"text":"be brief"}]},
                    "generationConfig":{"maxOutputTokens":5,"thinkingConfig":{"includeThoughts":true,"thinkingBudget":1024},"responseJsonSchema":{"additionalProperties":false}},
                    "tools":[{"functionDeclarations":[{"name":"f","parametersJsonSchema":{"type":"object","additionalProperties":false}}]}]}"#
            )
            .is_empty()
        );
    }
}
