//! End to end over a real socket: the `register` binary, then the `serve` binary, then
//! HTTP requests; and the ways `serve` refuses to start.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn register(registry: &std::path::Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_register"))
        .arg("--registry")
        .arg(registry)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A running `serve` process, killed on drop.
struct Server {
    child: Child,
    url: String,
    /// `host:port` of its gRPC listener, when it was given `--grpc-addr`.
    #[cfg_attr(not(feature = "torch"), allow(dead_code))]
    grpc: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(registry: &std::path::Path, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_serve"))
        .arg("--registry")
        .arg(registry)
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let grpc = args.contains(&"--grpc-addr").then(|| {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        line.trim().strip_prefix("listening for gRPC on ").unwrap_or_else(|| panic!("unexpected {line:?}")).to_string()
    });
    let server = Server { child, url, grpc };
    let http = reqwest::blocking::Client::new();
    let started = Instant::now();
    while http.get(format!("{}/readyz", server.url)).send().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "not ready in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// schemathesis (PyPI; scripts/test.sh installs it, see scripts/tools.sh) against `serve`'s
/// own OpenAPI document with every check on: generated requests, valid and not, must get
/// the statuses and bodies the document declares, and schema-valid ones must be accepted.
#[test]
fn schemathesis_finds_nothing_against_the_openapi_document() {
    let st = std::env::var_os("RUNNER_SCHEMATHESIS").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").unwrap_or_default();
        std::path::Path::new(&home).join(".cache/runner-tools/schemathesis-4.32.5/bin/st")
    });
    assert!(
        st.exists(),
        "{} is missing: run scripts/test.sh, or `. scripts/tools.sh; need_schemathesis`",
        st.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);
    let server = serve(&registry, &["iris:latest", "sum:1", "diabetes:1", "--api-key", "k"]);
    let output = Command::new(&st)
        .args(["run", &format!("{}/openapi.json", server.url), "--checks", "all", "--max-examples", "100"])
        .args(["--seed", "7", "--no-color", "-H", "Authorization: Bearer k"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "schemathesis found problems:\n{text}{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("passed"), "{text}");
}

#[test]
fn register_then_serve_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);
    let server = serve(&registry, &["iris:latest", "sum:1", "diabetes:1", "--api-key", "k"]);
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, body: Value| {
        let response = http.post(format!("{}{path}", server.url)).bearer_auth("k").json(&body).send().unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };

    let (status, iris) = post(
        "/models/iris/predict",
        json!({"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}),
    );
    assert_eq!((status, iris["species"].as_str()), (200, Some("virginica")), "{iris}");
    let (status, sum) = post("/models/sum/predict", json!({"values": [1.0, 2.0, 3.5]}));
    assert_eq!((status, sum), (200, json!({"sum": 6.5})));
    let (status, error) = post("/models/diabetes/predict", json!({"age": 0.01}));
    assert_eq!(status, 422);
    assert!(error["error"]["message"].as_str().unwrap().contains("missing field `sex`"), "{error}");

    let unauthorized =
        http.post(format!("{}/models/sum/predict", server.url)).json(&json!({"values": []})).send().unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    let openapi: Value =
        http.get(format!("{}/openapi.json", server.url)).bearer_auth("k").send().unwrap().json().unwrap();
    assert!(openapi["components"]["schemas"]["IrisRequest"]["properties"]["petal_width"].is_object(), "{openapi}");
}

fn serve_fails(registry: &std::path::Path, model: &str) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_serve"))
        .arg("--registry")
        .arg(registry)
        .args(["--addr", "127.0.0.1:0", model])
        .output()
        .unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn serve_refuses_what_it_cannot_load() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);

    let (code, err) = serve_fails(&registry, "iris:7");
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot serve iris:7") && err.contains("does not exist"), "{err}");

    let (code, err) = serve_fails(&registry, "iris:seven");
    assert_eq!(code, Some(1));
    assert!(err.contains("alias `seven` of `iris` does not exist") && err.contains("alias set"), "{err}");
    let (code, err) = serve_fails(&registry, "iris:Seven");
    assert_eq!(code, Some(2));
    assert!(err.contains("`Seven` is neither a model number nor an alias name"), "{err}");

    // A manifest naming a runner this binary does not contain.
    let manifest = registry.join("orgs/default/sum/1/manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"name\": \"sum\"", "\"name\": \"elsewhere\"")).unwrap();
    let (code, err) = serve_fails(&registry, "sum:1");
    assert_eq!(code, Some(1));
    assert!(err.contains("needs runner `elsewhere`") && err.contains("it has: diabetes, "), "{err}");

    // A corrupt file fails its checksum.
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(registry.join("orgs/default/iris/1/manifest.json")).unwrap())
            .unwrap();
    let sha = manifest["files"][0]["sha256"].as_str().unwrap();
    let blob = registry.join("blobs/sha256").join(&sha[..2]).join(sha);
    std::fs::write(&blob, b"{}").unwrap();
    let (code, err) = serve_fails(&registry, "iris:1");
    assert_eq!(code, Some(1));
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[cfg(feature = "torch")]
#[test]
fn register_then_serve_the_torch_examples() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);
    let server = serve(&registry, &["digits:latest", "minilm:latest", "--grpc-addr", "127.0.0.1:0"]);
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, body: Value| {
        let response = http.post(format!("{}{path}", server.url)).json(&body).send().unwrap();
        (response.status().as_u16(), response.json::<Value>().unwrap())
    };
    // The first image of the data set, a 0.
    let zero = [
        0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0, 0, 5,
        8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0,
    ];
    let (status, digits) = post("/models/digits/predict", json!({"images": [zero.to_vec()]}));
    assert_eq!((status, digits["digits"].clone()), (200, json!([0])), "{digits}");
    let (status, v2) = post(
        "/v2/models/digits/infer",
        json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": zero.map(|p| p as f32 / 16.0).to_vec()}]}),
    );
    assert_eq!(status, 200, "{v2}");
    assert_eq!(v2["outputs"][0]["shape"], json!([1, 10]));
    let (status, embedded) = post("/models/minilm/predict", json!({"sentences": ["A cat sits.", "A cat is sitting."]}));
    assert_eq!(status, 200, "{embedded}");
    let e: Vec<Vec<f32>> = serde_json::from_value(embedded["embeddings"].clone()).unwrap();
    assert_eq!(e[0].len(), 384);
    assert!(e[0].iter().zip(&e[1]).map(|(a, b)| a * b).sum::<f32>() > 0.8);

    // NVIDIA's tritonclient, over HTTP (JSON and binary tensors) and gRPC (raw and typed
    // contents): the same outputs every way, and the same as /predict.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tritonclient_models.py");
    let tokenizer = runner_examples::minilm::model_dir().join("tokenizer.json");
    let venv = std::env::var_os("VIRTUAL_ENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv"));
    let output = Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(server.url.trim_start_matches("http://"))
        .arg(server.grpc.as_deref().unwrap())
        .arg(tokenizer)
        .output()
        .expect("running the project's Python (scripts/torch-env.sh sets it up)");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && text.contains("all checks passed"),
        "tritonclient on digits and MiniLM:\n{text}"
    );
}

/// A raw HTTP/1.1 request to `sum`'s predict route that declares `length` body bytes and
/// sends `body` (all of them, or fewer to stall).
fn sum_request(length: usize, body: &str) -> Vec<u8> {
    format!("POST /models/sum/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{body}")
        .into_bytes()
}

/// Whether the server closed `tcp` (end of stream or reset), waiting up to 5 s; what it
/// sent before closing is returned too.
fn closed_by_server(tcp: &mut std::net::TcpStream) -> (bool, String) {
    use std::io::Read;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&received).into_owned()),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, String::from_utf8_lossy(&received).into_owned())
            }
            Err(_) => return (false, String::from_utf8_lossy(&received).into_owned()),
        }
    }
}

/// Slow and idle clients (a thousand connections that send nothing, and some that send
/// half a request head, half the HTTP/2 preface, half a body, or a request and then
/// nothing) are closed after `--header-timeout` and `--body-timeout`, while requests
/// from a normal client keep being answered.
#[test]
fn slow_and_idle_clients_are_closed_while_others_are_answered() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);
    let server = serve(&registry, &["sum:1", "--header-timeout", "2", "--body-timeout", "2"]);
    let addr = server.url.strip_prefix("http://").unwrap().to_string();
    let connect = |bytes: &[u8]| {
        let mut tcp = TcpStream::connect(&addr).unwrap();
        tcp.write_all(bytes).unwrap();
        tcp
    };
    let silent: Vec<TcpStream> = (0..1000).map(|_| connect(b"")).collect();
    let half_head: Vec<TcpStream> =
        (0..50).map(|_| connect(b"POST /models/sum/predict HTTP/1.1\r\nHost: x\r\nContent-Le")).collect();
    let half_preface: Vec<TcpStream> = (0..50).map(|_| connect(b"PRI * HTTP/2.0\r\n")).collect();
    let half_body: Vec<TcpStream> = (0..50).map(|_| connect(&sum_request(100, r#"{"values": [1,"#))).collect();
    let small = r#"{"values": [1.5]}"#;
    let mut kept_alive = connect(&sum_request(small.len(), small));
    let opened = Instant::now();

    // Meanwhile a normal client is answered, on new connections each time.
    for i in 0..20 {
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/models/sum/predict", server.url))
            .json(&json!({"values": [i as f64, 1.0]}))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.json::<Value>().unwrap(), json!({"sum": i as f64 + 1.0}));
    }
    assert!(opened.elapsed() < Duration::from_secs(2), "the test is too slow to tell timeouts apart");

    // A new connection may take the header timeout twice (first bytes, then the head).
    std::thread::sleep(Duration::from_secs(4).saturating_sub(opened.elapsed()));
    for (kind, connections) in
        [("silent", silent), ("half a head", half_head), ("half the HTTP/2 preface", half_preface)]
    {
        for mut tcp in connections {
            let (closed, sent) = closed_by_server(&mut tcp);
            assert!(closed, "a connection with {kind} is still open 4 s later");
            assert!(!sent.starts_with("HTTP/1.1 2"), "{kind}: {sent}");
        }
    }
    for mut tcp in half_body {
        let (closed, sent) = closed_by_server(&mut tcp);
        assert!(closed, "a connection with half a body is still open 4 s later");
        assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
        assert!(sent.contains("request_timeout") && sent.contains("--body-timeout"), "{sent}");
    }
    let (closed, sent) = closed_by_server(&mut kept_alive);
    assert!(closed, "an idle keep-alive connection is still open 4 s later");
    assert!(sent.starts_with("HTTP/1.1 200") && sent.contains(r#"{"sum":1.5}"#), "{sent}");
}

/// A body that arrives in pieces, with pauses (shorter than `--body-timeout`) between
/// them, is read whole: declared by its length, and chunked.
#[test]
fn bodies_arriving_in_pieces_are_read_whole() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);
    let server = serve(&registry, &["sum:1"]);
    let addr = server.url.strip_prefix("http://").unwrap().to_string();
    let body = r#"{"values": [1, 2.5, 4]}"#;
    let (first, second) = body.split_at(12);
    let chunked = "POST /models/sum/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let pieces: [Vec<Vec<u8>>; 2] = [
        {
            let head = sum_request(body.len(), "");
            let head = String::from_utf8(head).unwrap().replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
            vec![format!("{head}{first}").into_bytes(), second.as_bytes().to_vec()]
        },
        vec![
            format!("{chunked}{:x}\r\n{first}\r\n", first.len()).into_bytes(),
            format!("{:x}\r\n{second}\r\n", second.len()).into_bytes(),
            b"0\r\n\r\n".to_vec(),
        ],
    ];
    for request in pieces {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        for piece in &request {
            tcp.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(150));
        }
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(r#"{"sum":7.5}"#), "{answer}");
    }
}

/// Past `--max-connections` the server accepts no more until one closes: a request waits
/// while three silent connections hold every place, and is answered once the header
/// timeout has closed them.
#[test]
fn past_max_connections_new_connections_wait() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);
    let server = serve(&registry, &["sum:1", "--max-connections", "3", "--header-timeout", "2"]);
    let addr = server.url.strip_prefix("http://").unwrap().to_string();
    let _silent: Vec<std::net::TcpStream> = (0..3).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    let opened = Instant::now();
    let request = |timeout: Duration| {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap()
            .post(format!("{}/models/sum/predict", server.url))
            .json(&json!({"values": [2.0]}))
            .send()
    };
    let waiting = request(Duration::from_millis(700));
    assert!(opened.elapsed() < Duration::from_secs(2), "the test is too slow to tell the timeout apart");
    assert!(waiting.as_ref().is_err_and(|e| e.is_timeout()), "answered while every place was held: {waiting:?}");
    let answered = request(Duration::from_secs(10)).unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    assert!(opened.elapsed() >= Duration::from_millis(1500), "answered before the silent connections were closed");
}

/// A request whose body the server does not read (a declared length over `--body-limit`)
/// is answered with `Connection: close`, since the server closes that connection: a
/// client that pooled it would see its next request fail (the soak found this). Requests
/// whose bodies were read keep their connection.
#[test]
fn an_unread_body_closes_the_connection_and_says_so() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    register(&registry);
    let server = serve(&registry, &["sum:1", "--body-limit", "1000"]);
    let addr = server.url.strip_prefix("http://").unwrap().to_string();
    let exchange = |body: &str| {
        let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
        // The server may answer and close before it has read the whole body.
        let _ = tcp.write_all(&sum_request(body.len(), body));
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tcp.read(&mut answer).unwrap();
        String::from_utf8_lossy(&answer[..n]).to_lowercase()
    };
    let big = format!("{{\"values\": [{}1]}}", "1,".repeat(1000));
    let refused = exchange(&big);
    assert!(refused.starts_with("http/1.1 413") && refused.contains("connection: close"), "{refused}");
    let answered = exchange(r#"{"values": [1]}"#);
    assert!(answered.starts_with("http/1.1 200") && !answered.contains("connection: close"), "{answered}");
}
