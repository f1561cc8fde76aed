//! Access a team can run, on a directory server: tokens listed, revoked and expiring;
//! rights (read < write < admin) limited to repositories; and an audit log with one entry
//! for every change. (`tests/shared.rs` checks the same on two replicas of the shared
//! backend.)

#![allow(missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{sha256_hex, Scale, Scaler, Server, BIN};
use reqwest::blocking::Client;
use reqwest::Method;
use runner_core::{register_model, HttpRegistry};
use serde_json::{json, Value};

fn start(data: &Path) -> Server {
    let mut command = Command::new(BIN);
    command.args(["serve", "--addr", "127.0.0.1:0", "--data"]).arg(data).stderr(Stdio::null());
    Server::spawn(command)
}

/// `runner-registry ARGS --data DATA`: success, stdout, stderr.
fn admin(data: &Path, args: &[&str]) -> (bool, String, String) {
    let output =
        Command::new(BIN).args(args).arg("--data").arg(data).env_remove("RUNNER_REGISTRY_DATA").output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

/// A new token (`token create ARGS`).
fn token(data: &Path, args: &[&str]) -> String {
    let (ok, out, err) = admin(data, &[&["token", "create"], args].concat());
    assert!(ok, "{err}");
    out.trim().to_string()
}

/// The stored id of the token whose name is `name`.
fn id_of(data: &Path, name: &str) -> String {
    let (ok, out, err) = admin(data, &["token", "list", "--json"]);
    assert!(ok, "{err}");
    let tokens: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    tokens.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no token {name}: {out}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn register(url: &str, token: &str, repository: &str, cache: &Path) -> Result<u64, String> {
    let registry = HttpRegistry::with_cache(url, Some(token.to_string()), cache).unwrap();
    register_model::<Scaler>(repository)
        .organization("acme")
        .model(Scale(2.0))
        .register(&registry)
        .map(|loaded| loaded.id().number)
        .map_err(|e| e.to_string())
}

/// Sends `method path` with `token`; the status and the body.
fn send(http: &Client, url: &str, token: &str, method: Method, path: &str, body: Option<Vec<u8>>) -> (u16, String) {
    let mut request = http.request(method, format!("{url}{path}")).bearer_auth(token);
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().unwrap();
    (response.status().as_u16(), response.text().unwrap_or_default())
}

#[test]
fn tokens_are_listed_revoked_expire_and_reach_only_their_repositories_and_rights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ops = token(&data, &["--org", "acme", "--name", "ops", "--admin"]);
    let ci = token(&data, &["--org", "acme", "--name", "ci", "--write", "--expires", "90d"]);
    let iris_only = token(&data, &["--org", "acme", "--name", "iris-ci", "--write", "--repos", "iris,vision-*"]);
    let brief = token(&data, &["--org", "acme", "--name", "brief", "--read", "--expires", "1s"]);
    let server = start(&data);
    let http = Client::new();
    let cache = dir.path().join("cache");

    // Rights: write registers, only admin deletes.
    assert_eq!(register(&server.url, &ci, "digits", &cache), Ok(1));
    let (status, body) = send(&http, &server.url, &ci, Method::DELETE, "/v1/orgs/acme/repos/digits/models/1", None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admin right"), "{body}");
    // Repositories: a token limited to `iris,vision-*` registers there, and nowhere else.
    assert_eq!(register(&server.url, &iris_only, "iris", &cache), Ok(1));
    assert_eq!(register(&server.url, &iris_only, "vision-large", &cache), Ok(1));
    let refused = register(&server.url, &iris_only, "digits", &cache).unwrap_err();
    assert!(refused.contains("may only reach the repositories iris, vision-*"), "{refused}");
    let alias = json!({ "number": 1 }).to_string().into_bytes();
    let path = "/v1/orgs/acme/repos/digits/aliases/prod";
    assert_eq!(send(&http, &server.url, &iris_only, Method::PUT, path, Some(alias.clone())).0, 403);
    let (_, listed) = send(&http, &server.url, &iris_only, Method::GET, "/v1/orgs/acme/repos", None);
    assert_eq!(serde_json::from_str::<Value>(&listed).unwrap()["repositories"], json!(["iris", "vision-large"]));
    let (_, listed) = send(&http, &server.url, &ci, Method::GET, "/v1/orgs/acme/repos", None);
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["repositories"],
        json!(["digits", "iris", "vision-large"])
    );
    // ... and an admin deletes.
    let (status, body) = send(&http, &server.url, &ops, Method::DELETE, "/v1/orgs/acme/repos/digits/models/1", None);
    assert_eq!(status, 204, "{body}");

    // The list shows every token and when it was last used, and never a secret.
    let (ok, out, err) = admin(&data, &["token", "list"]);
    assert!(ok, "{err}");
    for secret in [&ops, &ci, &iris_only, &brief] {
        assert!(!out.contains(secret.as_str()), "{out}");
    }
    let row = |name: &str| out.lines().find(|l| l.split_whitespace().nth(1) == Some(name)).unwrap().to_string();
    assert!(row("ci").contains(" write ") && row("ci").ends_with("valid"), "{out}");
    assert!(row("iris-ci").contains("iris,vision-*"), "{out}");
    assert!(row("ops").contains(" admin "), "{out}");
    let stored = std::fs::read_to_string(data.join("tokens.json")).unwrap();
    assert!(!stored.contains(&ci), "only hashes are stored");
    // Last use: written by the server at most once a minute, the first use at once.
    let used = (0..50).any(|_| {
        let (_, out, _) = admin(&data, &["token", "list", "--json"]);
        let ci_row = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|t| t["name"] == "ci");
        std::thread::sleep(std::time::Duration::from_millis(100));
        ci_row.is_some_and(|t| t["last_used_at"].is_string())
    });
    assert!(used, "the list says when ci was last used");

    // Revoked: refused from the next request on, saying so.
    let ci_id = id_of(&data, "ci");
    let (ok, out, err) = admin(&data, &["token", "revoke", &ci_id]);
    assert!(ok && out.contains(&ci_id), "{err}");
    let (status, body) = send(&http, &server.url, &ci, Method::GET, "/v1/orgs/acme/repos", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    let (_, out, _) = admin(&data, &["token", "list"]);
    assert!(out.lines().any(|l| l.starts_with(&ci_id) && l.ends_with("revoked")), "{out}");
    let (ok, _, err) = admin(&data, &["token", "revoke", "nope"]);
    assert!(!ok && err.contains("no token has id `nope`"), "{err}");

    // Expired: refused once its time is up.
    let (status, _) = send(&http, &server.url, &brief, Method::GET, "/v1/orgs/acme/repos", None);
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, body) = send(&http, &server.url, &brief, Method::GET, "/v1/orgs/acme/repos", None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("expired"), "{body}");

    // A token in a URL is refused, whatever it is.
    let in_url = http.get(format!("{}/v1/orgs/acme/repos?access_token={ops}", server.url)).send().unwrap();
    assert_eq!(in_url.status().as_u16(), 400);
    assert!(in_url.text().unwrap().contains("Authorization: Bearer"));

    // Bad requests for tokens say what to write.
    let (ok, _, err) = admin(&data, &["token", "create", "--org", "acme", "--expires", "soon"]);
    assert!(!ok && err.contains("write `90d`"), "{err}");
    let (ok, _, err) = admin(&data, &["token", "create", "--org", "acme", "--write", "--admin"]);
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}

#[test]
fn a_token_file_written_before_the_upgrade_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let secret = "rrt_0123456789abcdef";
    let old = json!([{ "id": "0badc0de", "organization": "acme", "right": "write", "sha256": sha256_hex(secret.as_bytes()) }]);
    std::fs::write(data.join("tokens.json"), old.to_string()).unwrap();
    let server = start(&data);
    assert_eq!(register(&server.url, secret, "iris", &dir.path().join("cache")), Ok(1));
    let (ok, out, err) = admin(&data, &["token", "list"]);
    assert!(ok, "{err}");
    assert!(out.lines().any(|l| l.starts_with("0badc0de") && l.contains(" write ") && l.ends_with("valid")), "{out}");
}

/// The audit entries so far.
fn audit(data: &Path) -> Vec<Value> {
    let (ok, out, err) = admin(data, &["audit", "--json"]);
    assert!(ok, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// One request of the walk: method, route (as the OpenAPI document writes it), path,
/// body, and the action its audit entry names.
type Step<'a> = (&'a str, &'a str, String, Option<Vec<u8>>, &'a str);

#[test]
fn every_write_route_leaves_exactly_one_audit_entry_naming_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let secret = token(&data, &["--org", "acme", "--name", "auditor", "--admin"]);
    let id = id_of(&data, "auditor");
    let server = start(&data);
    let http = Client::new();
    assert_eq!(register(&server.url, &secret, "iris", &dir.path().join("cache")), Ok(1));
    let (_, model) = send(&http, &server.url, &secret, Method::GET, "/v1/orgs/acme/repos/iris/models/1", None);
    let mut manifest: Value = serde_json::from_str::<Value>(&model).unwrap()["manifest"].clone();
    manifest["model"]["number"] = json!(2);
    let content = b"audited content".to_vec();
    let sha = sha256_hex(&content);
    token(&data, &["--org", "acme", "--name", "victim"]);
    let victim = id_of(&data, "victim");
    let new_token = json!({ "name": "made-over-http", "right": "read" }).to_string().into_bytes();

    // Every route the OpenAPI document marks write or admin, with a request that succeeds,
    // in an order where each one can.
    let steps: Vec<Step<'_>> = vec![
        ("post", "/v1/orgs/{org}/repos/{repo}/models", "/v1/orgs/acme/repos/iris/models".into(), None, "reserve"),
        (
            "put",
            "/v1/orgs/{org}/repos/{repo}/models/{number}/reservation",
            "/v1/orgs/acme/repos/iris/models/2/reservation".into(),
            None,
            "keep_alive",
        ),
        ("put", "/v1/orgs/{org}/blobs/{sha256}", format!("/v1/orgs/acme/blobs/{sha}"), Some(content.clone()), "upload"),
        ("post", "/v1/orgs/{org}/blobs", "/v1/orgs/acme/blobs".into(), Some(b"unnamed".to_vec()), "upload"),
        (
            "put",
            "/v1/orgs/{org}/repos/{repo}/models/{number}/manifest",
            "/v1/orgs/acme/repos/iris/models/2/manifest".into(),
            Some(manifest.to_string().into_bytes()),
            "commit",
        ),
        (
            "put",
            "/v1/orgs/{org}/repos/{repo}/aliases/{alias}",
            "/v1/orgs/acme/repos/iris/aliases/prod".into(),
            Some(json!({ "number": 2 }).to_string().into_bytes()),
            "set_alias",
        ),
        (
            "delete",
            "/v1/orgs/{org}/repos/{repo}/aliases/{alias}",
            "/v1/orgs/acme/repos/iris/aliases/prod".into(),
            None,
            "delete_alias",
        ),
        (
            "delete",
            "/v1/orgs/{org}/repos/{repo}/models/{number}",
            "/v1/orgs/acme/repos/iris/models/2".into(),
            None,
            "delete_model",
        ),
        ("post", "/v1/orgs/{org}/repos/{repo}/models", "/v1/orgs/acme/repos/iris/models".into(), None, "reserve"),
        (
            "delete",
            "/v1/orgs/{org}/repos/{repo}/models/{number}/reservation",
            "/v1/orgs/acme/repos/iris/models/3/reservation".into(),
            None,
            "discard",
        ),
        ("delete", "/v1/orgs/{org}/repos/{repo}", "/v1/orgs/acme/repos/iris".into(), None, "delete_repository"),
        ("post", "/v1/orgs/{org}/tokens", "/v1/orgs/acme/tokens".into(), Some(new_token), "create_token"),
        ("delete", "/v1/orgs/{org}/tokens/{id}", format!("/v1/orgs/acme/tokens/{victim}"), None, "revoke_token"),
    ];
    let (_, document) = send(&http, &server.url, &secret, Method::GET, "/openapi.json", None);
    let document: Value = serde_json::from_str(&document).unwrap();
    let mut writes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let right = operation["x-runner-right"].as_str();
            assert!(matches!(right, Some("read" | "write" | "admin")), "{method} {path} states its right");
            // A change: a route that needs more than reading, and is not a read itself
            // (listing the tokens needs the admin right, and changes nothing).
            if matches!(right, Some("write" | "admin")) && !matches!(method.as_str(), "get" | "head") {
                writes.push((method.clone(), path.clone()));
            }
        }
    }
    assert_eq!(writes.len(), 12, "{writes:?}");
    for (method, path) in &writes {
        assert!(steps.iter().any(|(m, p, ..)| m == method && p == path), "no step exercises {method} {path}");
    }

    for (method, _, path, body, action) in steps {
        let before = audit(&data).len();
        let (status, answer) = send(&http, &server.url, &secret, method.to_uppercase().parse().unwrap(), &path, body);
        assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
        let entries = audit(&data);
        assert_eq!(entries.len(), before + 1, "{method} {path} made exactly one entry: {entries:?}");
        let entry = entries.last().unwrap();
        assert_eq!(
            (entry["action"].as_str(), entry["token_id"].as_str()),
            (Some(action), Some(id.as_str())),
            "{entry}"
        );
        assert_eq!(entry["token_name"], "auditor");
        assert_eq!(entry["address"], "127.0.0.1");
    }
    // Reads leave nothing.
    let before = audit(&data).len();
    send(&http, &server.url, &secret, Method::GET, "/v1/orgs/acme/repos", None);
    send(&http, &server.url, &secret, Method::HEAD, &format!("/v1/orgs/acme/blobs/{sha}"), None);
    assert_eq!(audit(&data).len(), before);

    // The admin commands record themselves as the operator; `--repo` and `--since` narrow.
    let revoked = token(&data, &["--org", "acme", "--name", "leaked"]);
    assert!(!revoked.is_empty());
    admin(&data, &["token", "revoke", &id_of(&data, "leaked")]);
    admin(&data, &["gc", "--grace-hours", "0"]);
    let entries = audit(&data);
    let actions: Vec<&str> = entries.iter().rev().take(3).map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["gc", "revoke_token", "create_token"]);
    assert!(entries.iter().rev().take(3).all(|e| e["token_id"] == "operator"));
    let (_, out, _) = admin(&data, &["audit", "--repo", "iris"]);
    assert!(out.lines().count() >= 10 && out.lines().all(|l| l.contains(" iris ")), "{out}");
    let (_, out, _) = admin(&data, &["audit", "--since", "2999-01-01T00:00:00Z"]);
    assert!(out.trim().is_empty(), "{out}");
    let (ok, _, err) = admin(&data, &["audit", "--since", "yesterday"]);
    assert!(!ok && err.contains("neither a time"), "{err}");
}

#[test]
fn an_organization_admin_manages_tokens_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ops = token(&data, &["--org", "acme", "--name", "ops", "--admin"]);
    let iris_admin = token(&data, &["--org", "acme", "--name", "iris-admin", "--admin", "--repos", "iris"]);
    let ci = token(&data, &["--org", "acme", "--name", "ci", "--write"]);
    let other = token(&data, &["--org", "other", "--name", "elsewhere", "--admin"]);
    let other_id = id_of(&data, "elsewhere");
    let server = start(&data);
    let http = Client::new();
    let tokens = "/v1/orgs/acme/tokens";

    // Only an admin of the whole organization.
    for (secret, why) in [(&ci, "admin right"), (&iris_admin, "whole organization")] {
        let (status, body) = send(&http, &server.url, secret, Method::GET, tokens, None);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains(why), "{body}");
    }
    assert_eq!(send(&http, &server.url, &other, Method::GET, tokens, None).0, 404);

    // Listed without secrets or hashes.
    let (status, listed) = send(&http, &server.url, &ops, Method::GET, tokens, None);
    assert_eq!(status, 200, "{listed}");
    let names: Vec<String> = serde_json::from_str::<Value>(&listed).unwrap()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 3, "{listed}");
    assert!(names.contains(&"ci".to_string()) && !names.contains(&"elsewhere".to_string()), "{listed}");
    for secret in [&ops, &iris_admin, &ci] {
        assert!(!listed.contains(secret.as_str()));
    }
    assert!(!listed.contains("sha256"), "{listed}");

    // Created: the secret is answered once, and works at once.
    let body = json!({ "name": "deploy", "right": "write", "repositories": ["iris"], "expires_in_seconds": 3600 });
    let (status, made) = send(&http, &server.url, &ops, Method::POST, tokens, Some(body.to_string().into_bytes()));
    assert_eq!(status, 201, "{made}");
    let made: Value = serde_json::from_str(&made).unwrap();
    let secret = made["token"].as_str().unwrap().to_string();
    assert_eq!((made["right"].as_str(), made["state"].as_str()), (Some("write"), Some("valid")), "{made}");
    assert!(made["expires_at"].is_string(), "{made}");
    assert_eq!(register(&server.url, &secret, "iris", &dir.path().join("cache")), Ok(1));
    let bad = json!({ "name": "has space", "right": "write" }).to_string().into_bytes();
    let (status, answer) = send(&http, &server.url, &ops, Method::POST, tokens, Some(bad));
    assert!(status == 400 || status == 422, "{status} {answer}");
    assert!(answer.contains("token name"), "{answer}");
    let (status, _) = send(&http, &server.url, &ops, Method::POST, tokens, Some(b"{\"name\": \"x\"}".to_vec()));
    assert_eq!(status, 422);

    // Revoked over HTTP: refused from the next request on.
    let id = made["id"].as_str().unwrap();
    let (status, revoked) = send(&http, &server.url, &ops, Method::DELETE, &format!("{tokens}/{id}"), None);
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked.contains("\"state\":\"revoked\""), "{revoked}");
    let (status, body) = send(&http, &server.url, &secret, Method::GET, "/v1/orgs/acme/repos", None);
    assert_eq!(status, 401, "{body}");
    // Another organization's token, or none, is unknown here.
    for id in [other_id.as_str(), "nope"] {
        assert_eq!(send(&http, &server.url, &ops, Method::DELETE, &format!("{tokens}/{id}"), None).0, 404);
    }
    assert_eq!(send(&http, &server.url, &other, Method::GET, "/v1/orgs/other/repos", None).0, 200);
}
