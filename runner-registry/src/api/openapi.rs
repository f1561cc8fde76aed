//! The registry API as an OpenAPI 3.1 document (`GET /openapi.json`).

use runner_core::registry::protocol::route;
use serde_json::{json, Value};

fn op(summary: &str, right: &str, responses: Value) -> Value {
    json!({
        "summary": summary,
        "description": format!("Needs a token with the `{right}` right for the organization (unless the server runs with --no-auth); a token limited to some repositories reaches only those. Rights: read < write < admin."),
        "x-runner-right": right,
        "security": [{ "bearer": [] }],
        "responses": responses,
    })
}

/// `operation` with the query of a paged listing (`limit`, `before`).
fn paged(mut operation: Value) -> Value {
    operation["parameters"] = json!([
        { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 },
          "description": "One page of at most this many models, newest first; without it, every model, oldest first" },
        { "name": "before", "in": "query", "required": false, "schema": model_number(),
          "description": "With limit: only models numbered below this (the previous page's `next`)" },
    ]);
    operation
}

fn errors(extra: &[(&str, &str)]) -> Value {
    let error = json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    let mut responses = serde_json::Map::new();
    for (status, why) in [
        ("400", "malformed name, sha256 or request"),
        ("401", "missing, unknown, revoked or expired token"),
        ("403", "the token lacks the right, or does not reach the repository"),
        ("404", "not found, or another organization's"),
        ("429", "over the token's rate limit, or (uploads) its cap on uploads in flight (see Retry-After)"),
        (
            "503",
            "the database or object store of a shared registry is unreachable; nothing was changed (see Retry-After)",
        ),
    ]
    .iter()
    .chain(extra)
    {
        responses.insert(status.to_string(), json!({ "description": why, "content": error }));
    }
    Value::Object(responses)
}

fn with(mut responses: Value, status: &str, description: &str, content: Option<Value>) -> Value {
    responses[status] = match content {
        Some(schema) => json!({ "description": description, "content": { "application/json": { "schema": schema } } }),
        None => json!({ "description": description }),
    };
    responses
}

/// The document.
pub(crate) fn document() -> Value {
    let org = json!({ "name": "org", "in": "path", "required": true, "schema": name("[a-z0-9]") });
    let repo = json!({ "name": "repo", "in": "path", "required": true, "schema": name("[a-z0-9]") });
    let number = json!({ "name": "number", "in": "path", "required": true, "schema": model_number() });
    let sha = json!({ "name": "sha256", "in": "path", "required": true, "schema": { "type": "string", "pattern": "^[0-9a-f]{64}$" } });
    let model = json!({ "$ref": "#/components/schemas/Model" });
    let mut alias_name = name("[a-z]");
    alias_name["not"] = json!({ "const": "latest" });
    let alias = json!({ "name": "alias", "in": "path", "required": true, "schema": alias_name });
    let change = json!({ "$ref": "#/components/schemas/AliasMove" });
    let canary = json!({ "$ref": "#/components/schemas/Canary" });
    let stored = json!({ "type": "object", "required": ["sha256", "size"], "properties": {
        "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "size": { "type": "integer", "minimum": 0 } } });
    let refused = [("403", "the token may only read, or does not reach the repository"), ("409", "the alias does not point where `expect` says (someone moved it), or the API fingerprint changed without `force` (the target's against the current one's, or the canary's against the target's)")];
    json!({
        "openapi": "3.1.0",
        "info": { "title": "runner-registry", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Organizations, repositories, numbered models and their files. A model is visible once its manifest is committed." },
        "paths": {
            (route::REPOSITORIES): { "parameters": [org], "get": op("List repositories", "read",
                with(errors(&[]), "200", "repositories", Some(json!({ "type": "object", "properties": { "repositories": { "type": "array", "items": { "type": "string" } } } })))) },
            (route::REPOSITORY): { "parameters": [org, repo], "delete": op("Delete a repository and its models", "admin",
                with(errors(&[("403", "the token may only read, or does not reach the repository")]), "204", "deleted", None)) },
            (route::MODELS): { "parameters": [org, repo],
                "get": paged(op("List models with status and manifest", "read",
                    with(errors(&[]), "200", "models", Some(json!({ "type": "object", "properties": {
                        "models": { "type": "array", "items": model },
                        "next": { "type": "integer", "description": "with limit, when older models remain: the `before` of the next page" } } }))))),
                "post": op("Take the next model number (atomic; the repository is created when needed)", "write",
                    with(errors(&[("403", "the token may only read, or does not reach the repository")]), "201", "the number taken", Some(json!({ "type": "object", "properties": { "number": { "type": "integer" } } })))) },
            (route::MODEL): { "parameters": [org, repo, number],
                "get": op("A model's status and manifest", "read", with(errors(&[]), "200", "the model", Some(model))),
                "delete": op("Delete a model (its manifest first)", "admin", with(errors(&[("409", "an alias points at the model: move or delete the alias first")]), "204", "deleted", None)) },
            (route::MANIFEST): { "parameters": [org, repo, number],
                "put": {
                    "summary": "Commit a model: every file it lists must be uploaded; the model becomes ready",
                    "description": "`If-None-Match: *` (a fresh number) or `If-Match: \"SHA256 of the current manifest\"` make a commit fail with 412 if someone else registered the number meanwhile.",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "write",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Manifest" } } } },
                    "responses": with(errors(&[("403", "the token may only read, or does not reach the repository"), ("412", "someone else committed this number meanwhile"), ("422", "invalid manifest, or files not uploaded")]), "204", "committed", None)
                } },
            (route::RESERVATION): { "parameters": [org, repo, number],
                "delete": op("Give back a number whose upload failed (no effect on a ready model)", "write", with(errors(&[]), "204", "given back", None)),
                "put": op("Keep a number reserved while its registration works: garbage collection gives back numbers untouched for its grace period (no effect on a ready model)", "write", with(errors(&[("404", "the number was given back, or never taken")]), "204", "kept", None)) },
            (route::ALIASES): { "parameters": [org, repo],
                "get": op("List the repository's aliases", "read",
                    with(errors(&[]), "200", "aliases", Some(json!({ "type": "object", "properties": { "aliases": { "type": "array", "items": {
                        "$ref": "#/components/schemas/Alias" } } } })))) },
            (route::ALIAS): { "parameters": [org, repo, alias],
                "put": {
                    "summary": "Point an alias at a ready model (created when needed), atomically, and record the move",
                    "description": "`expect` makes it a compare-and-set: `\"any\"` (default), `\"unset\"` (the alias must not exist) or `{\"number\": N}`. A model whose API fingerprint differs from the current target's is refused (409, naming what changed) unless `force`. `canary` splits the alias's traffic: `{\"number\": M, \"percent\": P}` has ready model M of the same repository (another number, checked like a move: its API fingerprint must be the target's unless `force`) answer P % of the requests of a `serve` of the alias; without it every request goes to `number` (a move sets the whole alias, so it also ends a split). `reason` says why, recorded in the history.",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "write",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["number"], "properties": {
                        "number": model_number(),
                        "expect": { "oneOf": [{ "enum": ["any", "unset"] }, { "type": "object", "required": ["number"], "properties": { "number": model_number() } }] },
                        "force": { "type": "boolean" },
                        "canary": { "oneOf": [canary, { "type": "null" }], "description": "the split after the move; absent or null: none" },
                        "reason": { "type": ["string", "null"], "maxLength": MAX_REASON, "description": "why, recorded in the history: at most 2048 bytes of UTF-8 (a longer one is refused with 422)" } } } } } },
                    "responses": with(errors(&[refused[0], refused[1], ("422", "malformed body, a canary that is the target itself, a share over 100 % or a reason over 2048 bytes")]), "200", "the move", Some(change.clone()))
                },
                "delete": {
                    "summary": "Delete an alias (the models stay), and record it",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "write",
                    "parameters": [{ "name": "expect", "in": "query", "required": false, "schema": model_number(), "description": "delete only while the alias points at this number" }],
                    "responses": with(errors(&refused), "200", "the move", Some(change.clone()))
                } },
            (route::HISTORY): { "parameters": [org, repo],
                "get": {
                    "summary": "Every alias move of the repository, oldest first: from, to, when, by which token",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "read",
                    "parameters": [{ "name": "alias", "in": "query", "required": false, "schema": { "type": "string" }, "description": "the moves of this alias only" }],
                    "responses": with(errors(&[]), "200", "the moves", Some(json!({ "type": "object", "properties": { "moves": { "type": "array", "items": change } } })))
                } },
            (route::BLOB): { "parameters": [org, sha],
                "head": op("Is this content stored? (asked before uploading; the x-runner-max-file-size header gives the largest file accepted)", "read", with(errors(&[]), "200", "stored", None)),
                "get": op("Download content; supports HTTP Range (206) to resume", "read", with(with(with(errors(&[]), "200", "the content", None), "206", "the byte range asked for", None), "307", "a shared registry run with --presign-seconds: fetch the content from the presigned URL in Location", None)),
                "put": {
                    "summary": "Upload content, streamed; kept only if its sha256 is the one in the path",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "write",
                    "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": with(with(errors(&[("403", "the token may only read, or does not reach the repository"), ("413", "larger than the server's limit"), ("422", "checksum mismatch: nothing kept"), ("507", "the registry's disk is full: nothing kept")]), "201", "stored", None), "200", "already stored", None)
                } },
            (route::BLOBS): { "parameters": [org],
                "head": {
                    "summary": "How large a content the server takes unnamed: the x-runner-max-unnamed-size header, in bytes (asked before a POST). With ?sample=, the x-runner-sample-known header says whether the organization holds content with that sample (runner_core::registry::sample): if not, the file is new and is sent unnamed",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "read",
                    "parameters": [{ "name": "sample", "in": "query", "required": false, "schema": { "type": "string", "pattern": "^[0-9a-f]{64}$" }, "description": "the sample of a large file: sha256 of its size and of 16 windows of 64 KiB" }],
                    "responses": with(errors(&[]), "200", "the limit (and the answer about the sample), in headers", None)
                },
                "post": {
                    "summary": "Upload content not named yet, streamed: answers the sha256 and size of what arrived (the client hashes as it sends and compares)",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "write",
                    "requestBody": { "required": true, "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } } },
                    "responses": with(with(errors(&[("403", "the token may only read, or does not reach the repository"), ("413", "larger than the server's limit, or than it takes unnamed (see HEAD)"), ("507", "the registry's disk is full: nothing kept")]), "201", "stored", Some(stored.clone())), "200", "the organization had this content already", Some(stored))
                } },
            (super::tokens::TOKENS): { "parameters": [org],
                "get": op("The organization's tokens: id, name, right, repositories, created, expires, last used, state (never a secret)", "admin",
                    with(errors(&[("403", "the token is not an admin of the whole organization")]), "200", "the tokens", Some(json!({ "type": "object", "properties": { "tokens": { "type": "array", "items": { "$ref": "#/components/schemas/Token" } } } })))),
                "post": {
                    "summary": "Create a token; its secret is in the answer, once (only its hash is stored)",
                    "security": [{ "bearer": [] }],
                    "x-runner-right": "admin",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["name", "right"], "additionalProperties": false, "properties": {
                        "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
                        "right": { "enum": ["read", "write", "admin"] },
                        "repositories": { "type": "array", "items": { "type": "string", "minLength": 1 }, "description": "names or globs (`vision-*`); absent or empty: every repository" },
                        "expires_in_seconds": { "type": ["integer", "null"], "minimum": 0, "maximum": crate::tokens::MAX_LIFETIME.as_secs(), "description": "absent, null or 0: until revoked; 100 years at most" } } } } } },
                    "responses": with(errors(&[("403", "the token is not an admin of the whole organization"), ("422", "malformed body, name or glob")]), "201", "the token, with its secret in `token`", Some(json!({ "$ref": "#/components/schemas/Token" })))
                } },
            (super::tokens::TOKEN): { "parameters": [org, { "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "delete": op("Revoke a token for good: refused from the next request on, on every replica", "admin",
                    with(errors(&[("403", "the token is not an admin of the whole organization"), ("404", "no token of the organization has this id")]), "200", "the token, revoked", Some(json!({ "$ref": "#/components/schemas/Token" })))) }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Token": { "type": "object", "required": ["id", "name", "right", "repositories", "state"], "properties": {
                    "id": { "type": "string" }, "name": { "type": "string" }, "right": { "enum": ["read", "write", "admin"] },
                    "repositories": { "type": "array", "items": { "type": "string" } },
                    "created_at": { "type": ["string", "null"] }, "expires_at": { "type": ["string", "null"] },
                    "revoked_at": { "type": ["string", "null"] }, "last_used_at": { "type": ["string", "null"] },
                    "state": { "enum": ["valid", "revoked", "expired"] },
                    "token": { "type": "string", "description": "the secret: in the answer of POST only" } } },
                "Model": { "type": "object", "required": ["number", "status"], "properties": {
                    "number": { "type": "integer" }, "status": { "enum": ["uploading", "ready"] },
                    "manifest": { "oneOf": [{ "$ref": "#/components/schemas/Manifest" }, { "type": "null" }] } } },
                "Manifest": { "type": "object", "description": "runner-core's manifest: runner, save info, default hooks, requirements, artifact mapping, and every file's path, size and sha256",
                    "required": ["manifest_version", "model", "runner", "save", "files"] },
                "Alias": { "type": "object", "required": ["name", "number"], "properties": {
                    "name": { "type": "string" }, "number": { "type": "integer" },
                    "canary": { "$ref": "#/components/schemas/Canary", "description": "present when the alias splits its traffic" } } },
                "Canary": { "type": "object", "required": ["number", "percent"], "description": "a traffic split: another ready model of the repository, and the share of the alias's requests it answers", "properties": {
                    "number": model_number(), "percent": { "type": "integer", "minimum": 0, "maximum": 100, "description": "whole percents" } } },
                "AliasMove": { "type": "object", "required": ["alias", "from", "to", "at", "by", "forced"], "properties": {
                    "alias": { "type": "string" }, "from": { "type": ["integer", "null"] }, "to": { "type": ["integer", "null"] },
                    "at": { "type": "string", "format": "date-time" }, "by": { "type": "string" }, "forced": { "type": "boolean" },
                    "from_canary": { "$ref": "#/components/schemas/Canary", "description": "the split before the move, if there was one" },
                    "to_canary": { "$ref": "#/components/schemas/Canary", "description": "the split after the move, if there is one" },
                    "reason": { "type": "string", "description": "why it moved, when the mover said" } } },
                "Error": { "type": "object", "properties": { "error": { "type": "object", "properties": {
                    "status": { "type": "integer" }, "code": { "type": "string" }, "message": { "type": "string" } } } } }
            }
        }
    })
}

/// The longest `reason` a move records, in bytes (runner-core's `registry::alias::MAX_REASON`,
/// which its registry module does not export). JSON Schema counts characters, so the
/// document allows as many characters and says the limit is in bytes.
const MAX_REASON: usize = 2048;

/// A model number as the server parses it: a whole number from 1 that fits 64 bits.
fn model_number() -> serde_json::Value {
    json!({ "type": "integer", "minimum": 1, "maximum": u64::MAX })
}

/// A name as `validate_name` takes it: 1 to 64 lowercase letters, digits, `-`, `_` and
/// `.`, starting with `first`, with no `..` (written without lookahead: every `.` is
/// followed by another character or ends the name).
fn name(first: &str) -> serde_json::Value {
    json!({ "type": "string", "maxLength": 64, "pattern": format!("^{first}(?:[a-z0-9_-]|\\.[a-z0-9_-])*\\.?$") })
}
