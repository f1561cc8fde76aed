//! The pages, in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/tools.sh`'s `need_chromium`).
//! Each test saves screenshots at 1280 and 390 pixels wide under
//! `target/tmp/screenshots/`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use runner_core::registry::{AliasOptions, Canary};
use runner_core::serve::{RepositoryMode, ServeOptions};
use runner_core::{register_model, runner, LocalRegistry, ModelId, ModelStatus, RawBody, Registry};
use runner_examples::sum::{SumModel, SumRunner};
use runner_registry::{Backend, Config, NewToken, Right};
use serde_json::json;

mod serving;
use serving::Serving;

const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver and one headless Chromium session, closed on drop.
struct Browser {
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver = std::env::var("RUNNER_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start `{chromedriver}` ({e}): install Debian's chromium and chromium-driver (scripts/tools.sh need_chromium), or set RUNNER_CHROMEDRIVER")
            });
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.path().display()),
                "--window-size=1280,900",
            ] }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&url).await {
                Ok(client) => break client,
                Err(e) if started.elapsed() < WAIT => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver on {url} gave no session: {e}"),
            }
        };
        Browser { client: Some(client), driver, _profile: profile }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn goto(&self, url: &str) {
        self.client().goto(url).await.unwrap();
    }

    /// The element `css` finds, waiting for it; a page without it fails the test, with the page.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client().wait().at_most(WAIT).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => {
                let page = self.client().source().await.unwrap_or_default();
                panic!("no `{css}` on {} ({e}):\n{page}", self.path().await)
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    async fn count(&self, css: &str) -> usize {
        self.client().find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn path(&self) -> String {
        let url = self.client().current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Screenshots of the page at 1280 and 390 pixels wide.
    async fn shoot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        for (width, height) in [(390, 844), (1280, 900)] {
            self.client().set_window_size(width, height).await.unwrap();
            self.client().execute("window.scrollTo(0, 0); document.activeElement.blur()", vec![]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            let png = self.client().screenshot().await.unwrap();
            assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
            std::fs::write(dir.join(format!("{name}-{width}.png")), png).unwrap();
        }
    }

    /// Loads `url` again and again until `done` holds for the text of the element `css`
    /// finds (`None`: no such element); returns that text.
    async fn reload_until(&self, url: &str, css: &str, done: impl Fn(Option<&str>) -> bool) -> Option<String> {
        let started = Instant::now();
        loop {
            self.goto(url).await;
            let text = match self.client().find(Locator::Css(css)).await {
                Ok(element) => Some(element.text().await.unwrap_or_default()),
                Err(_) => None,
            };
            if done(text.as_deref()) {
                return text;
            }
            assert!(started.elapsed() < WAIT, "`{css}` on {url} never showed what was awaited; last: {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The attribute `name` of the element `css` finds.
    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.unwrap()
    }

    /// Waits until `done` holds for the page's text.
    async fn wait_for_text(&self, css: &str, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = match self.client().find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return text;
            }
            assert!(started.elapsed() < WAIT, "`{css}` never showed what was awaited; last: {text:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the session (and its Chromium) before the driver goes.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move { client.close().await })
            })
            .join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Serves `router` on a free port of 127.0.0.1 for the rest of the test.
async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A runner that takes raw bytes (the page offers a file picker).
pub struct Bytecount;

/// `Bytecount`'s model: nothing to keep.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Unit;

/// What `Bytecount` answers.
#[derive(serde::Serialize)]
pub struct Counted {
    bytes: usize,
    zeros: usize,
}

#[runner(name = "bytecount")]
impl Bytecount {
    fn predict(_model: &Unit, data: RawBody) -> Counted {
        Counted { bytes: data.bytes.len(), zeros: data.bytes.iter().filter(|b| **b == 0).count() }
    }
}

const XSS: &str = "<script>document.title='pwned'</script>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_browser_signs_in_browses_downloads_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    register_model::<SumRunner>("sums")
        .model(SumModel { scale: 1.0 })
        .requirements(["numpy==1"])
        .register(&registry)
        .unwrap();
    register_model::<SumRunner>("sums")
        .model(SumModel { scale: 2.0 })
        .requirements(["numpy==2", XSS])
        .register(&registry)
        .unwrap();
    for scale in 0..60 {
        register_model::<SumRunner>("many").model(SumModel { scale: scale as f64 }).register(&registry).unwrap();
    }
    registry.set_alias("default", "sums", "prod", 1, &AliasOptions::default()).unwrap();
    let sums_2 = registry.manifest(&ModelId::new("default", "sums", 2).unwrap()).unwrap();

    let backend = Backend::directory(dir.path()).unwrap();
    let token = |organization: &str, right: Right| NewToken {
        organization: organization.into(),
        name: format!("{right}-pages"),
        right,
        repositories: vec![],
        expires_in: None,
    };
    // The pages' deletes need the admin right.
    let admin = backend.create_token(&token("default", Right::Admin)).await.unwrap().0;
    let read = backend.create_token(&token("default", Right::Read)).await.unwrap().0;
    let other = backend.create_token(&token("acme", Right::Write)).await.unwrap().0;
    let leaked = NewToken { name: "leaked".into(), ..token("default", Right::Read) };
    let leaked = backend.create_token(&leaked).await.unwrap().0;
    let addr = serve(runner_registry::router(backend, &Config::default())).await;
    let base = format!("http://{addr}");

    let browser = Browser::start().await;
    // Signed out: the sign-in form, and the pages send you there.
    browser.goto(&format!("{base}/orgs/default")).await;
    assert_eq!(browser.text("h1").await, "Sign in");
    browser.goto(&format!("{base}/")).await;
    browser.shoot("registry-sign-in").await;
    let field = browser.client().find(Locator::Css("input[name=token]")).await.unwrap();
    field.send_keys(&admin).await.unwrap();
    browser.click("form.search button").await;
    browser.wait_for_text("h1", |t| t == "Repositories of default").await;
    assert_eq!(browser.path().await, "/orgs/default");
    // The token went into the cookie, which scripts cannot read, and not into a URL.
    let visible = browser.client().execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(visible, json!(""), "the session cookie is HttpOnly");
    assert!(!browser.path().await.contains(&admin));

    // Repositories with their counts and latest number; the search narrows them.
    let rows = browser.text("table tbody").await;
    assert!(rows.contains("many 60 60"), "{rows}");
    assert!(rows.contains("sums 2 2"), "{rows}");
    browser.shoot("registry-repositories").await;
    let search = browser.client().find(Locator::Css("input[name=q]")).await.unwrap();
    search.send_keys("sum").await.unwrap();
    browser.click("form.search button").await;
    browser.wait_for_text("div.pager", |t| t.starts_with("1 repository")).await;
    assert_eq!(browser.count("table tbody tr").await, 1);

    // A repository: newest first, with its alias; then its second page.
    browser.goto(&format!("{base}/orgs/default/many")).await;
    assert_eq!(browser.count("table tbody tr").await, 50);
    assert_eq!(browser.text("table tbody tr:first-child td:first-child").await, "60");
    browser.click("a[rel=next]").await;
    browser.wait_for_text("div.pager", |t| t.contains("page 2 of 2")).await;
    assert_eq!(browser.count("table tbody tr").await, 10);
    assert_eq!(browser.text("table tbody tr:last-child td:first-child").await, "1");
    browser.goto(&format!("{base}/orgs/default/sums")).await;
    let rows = browser.text("table tbody").await;
    assert!(rows.contains("1 ready") && rows.contains("prod"), "{rows}");
    let history = browser.text("section.history").await;
    assert!(history.contains("prod created → 1"), "{history}");
    browser.shoot("registry-models").await;

    // One model: its manifest laid out, each file's sha256, what changed since 1.
    browser.click("table tbody tr:first-child td:first-child a").await;
    browser.wait_for_text("h1", |t| t.starts_with("default/sums:2")).await;
    let file = &sums_2.files[0];
    let sha = browser.text(&format!("tr[data-path='{}'] td.sha", file.path)).await;
    assert_eq!(sha, file.sha256);
    let changes = browser.text("section.changes").await;
    assert!(changes.contains("Changes since number 1"), "{changes}");
    assert!(changes.contains(&format!("changed {}", file.path)), "{changes}");
    assert!(changes.contains("requirement added numpy==2"), "{changes}");
    assert!(changes.contains("requirement removed numpy==1"), "{changes}");
    // A requirement holding a script is shown as text, and never runs.
    assert!(changes.contains(XSS), "{changes}");
    assert_ne!(browser.client().title().await.unwrap(), "pwned");
    browser.shoot("registry-model").await;
    // The download link gives the file's bytes.
    let href = browser
        .client()
        .find(Locator::Css(&format!("tr[data-path='{}'] a", file.path)))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let body = browser
        .client()
        .execute_async(
            "const done = arguments[1]; fetch(arguments[0]).then(r => r.text()).then(done)",
            vec![json!(href)],
        )
        .await
        .unwrap();
    let stored = std::fs::read(registry_blob(dir.path(), &file.sha256)).unwrap();
    assert_eq!(body.as_str().unwrap().as_bytes(), stored);

    // Deleting, with a confirmation; an aliased model is refused, naming the alias.
    browser.click("a.button.danger").await;
    browser.wait_for_text("h1", |t| t == "Delete default/sums:2?").await;
    browser.shoot("registry-confirm").await;
    browser.click("button.danger").await;
    browser.wait_for_text("p.added", |t| t == "Model 2 was deleted.").await;
    assert_eq!(browser.path().await, "/orgs/default/sums?deleted=2");
    assert_eq!(registry.status(&ModelId::new("default", "sums", 2).unwrap()).unwrap(), None);
    browser.goto(&format!("{base}/orgs/default/sums/1/delete")).await;
    browser.click("button.danger").await;
    let refused = browser.wait_for_text("p.error", |t| !t.is_empty()).await;
    assert!(refused.contains("prod"), "{refused}");
    assert_eq!(registry.status(&ModelId::new("default", "sums", 1).unwrap()).unwrap(), Some(ModelStatus::Ready));

    // An admin's pages: the organization's tokens (never a secret, never another
    // organization's), revoked from the page, which ends the token's sessions at once.
    let leaked_session = format!("runner_session={leaked}");
    let as_leaked = || reqwest::Client::new().get(format!("{base}/orgs/default")).header("cookie", &leaked_session);
    assert_eq!(as_leaked().send().await.unwrap().status(), 200);
    browser.goto(&format!("{base}/orgs/default")).await;
    browser.click("p.admin a").await;
    browser.wait_for_text("h1", |t| t == "Tokens of default").await;
    let listed = browser.text("table tbody").await;
    assert!(listed.contains("admin-pages") && listed.contains("read-pages") && listed.contains("leaked"), "{listed}");
    assert!(!listed.contains("write-pages"), "another organization's token is listed: {listed}");
    for secret in [&admin, &read, &leaked, &other] {
        assert!(!browser.client().source().await.unwrap().contains(secret.as_str()));
    }
    browser.shoot("registry-tokens").await;
    let revoke = "//tr[td[2][normalize-space()='leaked']]//button";
    browser.client().find(Locator::XPath(revoke)).await.unwrap().click().await.unwrap();
    browser.wait_for_text("table tbody", |t| t.lines().any(|l| l.contains("leaked") && l.contains("revoked"))).await;
    let refused = as_leaked().send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().contains("revoked"));
    // ... and its audit log: the delete above and the revocation, by this token.
    browser.goto(&format!("{base}/orgs/default/-/audit")).await;
    let log = browser.text("table tbody").await;
    let first = log.lines().next().unwrap_or_default();
    assert!(first.contains("revoke_token") && first.contains("leaked") && first.contains("admin-pages"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("delete_model") && l.contains("sums:2") && l.contains("admin-pages")),
        "{log}"
    );
    browser.shoot("registry-audit").await;

    // Signing out clears the cookie.
    browser.goto(&format!("{base}/orgs/default")).await;
    browser.click("header form button").await;
    browser.wait_for_text("h1", |t| t == "Sign in").await;
    browser.goto(&format!("{base}/orgs/default/sums")).await;
    assert_eq!(browser.text("h1").await, "Sign in");

    // A read token: no delete button, and a delete it forges is refused.
    let field = browser.client().find(Locator::Css("input[name=token]")).await.unwrap();
    field.send_keys(&read).await.unwrap();
    browser.click("form.search button").await;
    browser.wait_for_text("h1", |t| t == "Repositories of default").await;
    browser.goto(&format!("{base}/orgs/default/sums/1")).await;
    assert_eq!(browser.count("a.button.danger").await, 0);
    let forged = browser
        .client()
        .execute_async(
            "const done = arguments[0];
             const csrf = document.querySelector('input[name=csrf]').value;
             fetch('/orgs/default/sums/1/delete', {method: 'POST', body: new URLSearchParams({csrf})})
               .then(r => done(r.status))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(forged, json!(403));
    browser.goto(&format!("{base}/orgs/default/-/audit")).await;
    assert!(browser.text("p.error").await.contains("admin right"));
    browser.goto(&format!("{base}/orgs/default")).await;
    assert_eq!(browser.count("p.admin a").await, 0, "no admin links for a read token");
    assert_eq!(registry.status(&ModelId::new("default", "sums", 1).unwrap()).unwrap(), Some(ModelStatus::Ready));

    // Names from the URL are shown as text: a repository named with a script.
    browser.goto(&format!("{base}/orgs/default/%3Cscript%3Edocument.title='pwned'%3C%2Fscript%3E")).await;
    let message = browser.text("p.error").await;
    assert!(message.contains(XSS), "{message}");
    assert_ne!(browser.client().title().await.unwrap(), "pwned");
    browser.shoot("registry-script-name").await;
    browser.goto(&format!("{base}/orgs/default?q=%3Cscript%3Edocument.title%3D'pwned'%3C%2Fscript%3E")).await;
    let value = browser.client().find(Locator::Css("input[name=q]")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(value.as_deref(), Some(XSS));
    assert_ne!(browser.client().title().await.unwrap(), "pwned");
    drop(browser);

    // Outside a browser: a form without the CSRF token, or from another site, is refused;
    // another organization's token is told the organization does not exist.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = format!("runner_session={admin}");
    let post = |path: &str| http.post(format!("{base}{path}")).header("cookie", &cookie);
    let no_csrf = post("/orgs/default/many/1/delete").form(&[("csrf", "nope")]).send().await.unwrap();
    assert_eq!(no_csrf.status(), 403);
    let csrf = runner_core::serve::page::csrf_token(&admin);
    let cross_site = post("/orgs/default/many/1/delete")
        .header("origin", "https://evil.example")
        .form(&[("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert_eq!(registry.status(&ModelId::new("default", "many", 1).unwrap()).unwrap(), Some(ModelStatus::Ready));
    let ok = post("/orgs/default/many/1/delete").form(&[("csrf", &csrf)]).send().await.unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(registry.status(&ModelId::new("default", "many", 1).unwrap()).unwrap(), None);
    let elsewhere = http
        .get(format!("{base}/orgs/default"))
        .header("cookie", format!("runner_session={other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    let headers = elsewhere.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
}

fn registry_blob(root: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    root.join("blobs/sha256").join(&sha256[..2]).join(sha256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_page_shows_live_figures_and_its_form_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    register_model::<SumRunner>("sum").model(SumModel { scale: 2.0 }).register(&registry).unwrap();
    register_model::<runner_examples::iris::Iris>("iris")
        .model(runner_examples::iris::Iris::train().unwrap())
        .register(&registry)
        .unwrap();
    register_model::<Bytecount>("bytecount").model(Unit).register(&registry).unwrap();
    let registry: Arc<dyn Registry> = Arc::new(registry);
    let open = serve_models(registry.clone(), None).await;
    let base = open.url.clone();

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/")).await;
    assert_eq!(browser.text("h1").await, "Served models");
    assert_eq!(browser.count("section.model").await, 3);
    let sum = "section.model[data-model=sum]";
    // Models named at start only: no registry listing to read.
    assert_eq!(browser.count("section.others").await, 0);
    let facts = browser.text(&format!("{sum} dl.facts")).await;
    assert!(facts.contains("sum:1") && facts.contains("runner-examples"), "{facts}");
    // Models named at start were not measured while loading; when each was last used is shown.
    assert!(facts.contains("not measured (loaded at start)") && facts.contains("ago"), "{facts}");
    // The form is prefilled with an example the runner accepts; sending it shows the
    // answer, which is what the API answers.
    let example = browser
        .client()
        .find(Locator::Css(&format!("{sum} textarea")))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    let expected = reqwest::Client::new()
        .post(format!("{base}/models/sum/predict"))
        .header("content-type", "application/json")
        .body(example.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(expected.status(), 200, "the generated example is valid: {example}");
    let expected: serde_json::Value = expected.json().await.unwrap();
    browser.click(&format!("{sum} form.try button")).await;
    browser.wait_for_text(&format!("{sum} [data-out=status]"), |t| t.starts_with("HTTP 200")).await;
    let answer = browser.text(&format!("{sum} [data-out=body]")).await;
    assert_eq!(numbers(&serde_json::from_str(&answer).unwrap()), numbers(&expected), "{answer}");
    assert_eq!(browser.text(&format!("{sum} [data-out=model]")).await, "answered by sum:1");
    // A real prediction typed in by hand.
    let iris = "section.model[data-model=iris]";
    let textarea = browser.client().find(Locator::Css(&format!("{iris} textarea"))).await.unwrap();
    textarea.clear().await.unwrap();
    textarea
        .send_keys(r#"{"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}"#)
        .await
        .unwrap();
    browser.click(&format!("{iris} form.try button")).await;
    browser.wait_for_text(&format!("{iris} [data-out=status]"), |t| t.starts_with("HTTP 200")).await;
    let answer: serde_json::Value =
        serde_json::from_str(&browser.text(&format!("{iris} [data-out=body]")).await).unwrap();
    assert_eq!(answer["species"], "virginica", "{answer}");
    // A body the runner refuses shows its status and message.
    textarea.clear().await.unwrap();
    textarea.send_keys(r#"{"sepal_length": "wide"}"#).await.unwrap();
    browser.click(&format!("{iris} form.try button")).await;
    let status = browser.wait_for_text(&format!("{iris} [data-out=status]"), |t| t.starts_with("HTTP 4")).await;
    assert!(status.starts_with("HTTP 422"), "{status}");
    // A raw-bytes runner takes a file.
    let bytes = "section.model[data-model=bytecount]";
    let file = dir.path().join("sample.bin");
    std::fs::write(&file, [0u8, 7, 0, 0, 9, 0, 1, 2, 3, 4]).unwrap();
    let picker = browser.client().find(Locator::Css(&format!("{bytes} input[type=file]"))).await.unwrap();
    picker.send_keys(file.to_str().unwrap()).await.unwrap();
    browser.click(&format!("{bytes} form.try button")).await;
    browser.wait_for_text(&format!("{bytes} [data-out=status]"), |t| t.starts_with("HTTP 200")).await;
    let counted: serde_json::Value =
        serde_json::from_str(&browser.text(&format!("{bytes} [data-out=body]")).await).unwrap();
    assert_eq!(counted, json!({ "bytes": 10, "zeros": 4 }));
    // The live figures come from /metrics and refresh by themselves.
    let requests = browser.wait_for_text(&format!("{iris} [data-stat=requests]"), |t| t == "2").await;
    assert_eq!(requests, "2");
    assert_eq!(browser.wait_for_text(&format!("{iris} [data-stat=errors]"), |t| t == "1").await, "1");
    let runs = browser.wait_for_text(&format!("{iris} [data-runs]"), |t| t.contains("measured calls")).await;
    assert!(runs.starts_with("blocking_pool") || runs.starts_with("inline"), "{runs}");
    let p50 = browser.text(&format!("{iris} [data-stat=p50]")).await;
    assert!(p50.ends_with("µs") || p50.ends_with("ms"), "{p50}");
    browser.shoot("serve-models").await;

    // The API reference, rendered from /openapi.json.
    browser.click("a[href='/docs']").await;
    browser.wait_for_text("h1", |t| t.starts_with("runner model server")).await;
    let operations = browser.text("main").await;
    assert!(
        operations.contains("POST /models/iris/predict") && operations.contains("POST /models/sum/predict"),
        "{operations}"
    );
    browser.shoot("serve-docs").await;
    drop(browser);

    open.stop().await.unwrap();

    // With an API key: the page asks for it, then works with it in a cookie.
    let serving = serve_models(registry, Some("s3cret-key")).await;
    let base = serving.url.clone();
    let browser = Browser::start().await;
    browser.goto(&format!("{base}/")).await;
    assert_eq!(browser.text("h1").await, "Sign in");
    let field = browser.client().find(Locator::Css("input[name=key]")).await.unwrap();
    field.send_keys("wrong").await.unwrap();
    browser.click("form.search button").await;
    assert_eq!(browser.wait_for_text("p.error", |t| !t.is_empty()).await, "wrong API key");
    let field = browser.client().find(Locator::Css("input[name=key]")).await.unwrap();
    field.send_keys("s3cret-key").await.unwrap();
    browser.click("form.search button").await;
    browser.wait_for_text("h1", |t| t == "Served models").await;
    browser.click(&format!("{sum} form.try button")).await;
    browser.wait_for_text(&format!("{sum} [data-out=status]"), |t| t.starts_with("HTTP 200")).await;
    browser.wait_for_text(&format!("{sum} [data-stat=requests]"), |t| t == "1").await;
    drop(browser);
    // The cookie alone cannot predict: another site's form could send it, not the token.
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{base}/models/sum/predict"))
        .header("cookie", "runner_key=s3cret-key")
        .body(example)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    serving.stop().await.unwrap();
}

/// `value` with every number as an f64: the page shows JSON as the browser prints it
/// (`0.0` becomes `0`).
fn numbers(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Number(n) => json!(n.as_f64()),
        serde_json::Value::Array(items) => items.iter().map(numbers).collect(),
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), numbers(v))).collect(),
        other => other.clone(),
    }
}

/// Serves the registry's `sum`, `iris` and `bytecount` on a free port, with `api_key`.
async fn serve_models(registry: Arc<dyn Registry>, api_key: Option<&str>) -> Serving {
    let options = runner_core::serve::ServeOptions { api_key: api_key.map(str::to_string), ..Default::default() };
    Serving::start(registry, &["sum:latest", "iris:latest", "bytecount:latest"], options).await
}

/// Signs `browser` in to the registry at `base` with `token`.
async fn sign_in_to_registry(browser: &Browser, base: &str, token: &str) {
    browser.goto(&format!("{base}/")).await;
    let field = browser.client().find(Locator::Css("input[name=token]")).await.unwrap();
    field.send_keys(token).await.unwrap();
    browser.click("form.search button").await;
    browser.wait_for_text("h1", |t| t.starts_with("Repositories of")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_browser_shows_a_split_and_why_its_alias_moved() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    for scale in 1..=3 {
        register_model::<SumRunner>("sums").model(SumModel { scale: scale as f64 }).register(&registry).unwrap();
    }
    // A rollout of 2 that was rolled back, then one of 3 at its first step.
    let rolled_back = format!("rollout of 2 rolled back at step 10%: canary 5xx rate 6.0% over 1.0% {XSS}");
    let moves = [
        (None, None),
        (Some(Canary { number: 2, percent: 10 }), Some("rollout of 2: step 10%".to_string())),
        (None, Some(rolled_back.clone())),
        (Some(Canary { number: 3, percent: 10 }), Some("rollout of 3: step 10%".to_string())),
    ];
    for (canary, reason) in moves {
        registry
            .set_alias("default", "sums", "prod", 1, &AliasOptions { canary, reason, ..Default::default() })
            .unwrap();
    }

    let backend = Backend::directory(dir.path()).unwrap();
    let read = NewToken {
        organization: "default".into(),
        name: "read-pages".into(),
        right: Right::Read,
        repositories: vec![],
        expires_in: None,
    };
    let read = backend.create_token(&read).await.unwrap().0;
    let addr = serve(runner_registry::router(backend, &Config::default())).await;
    let base = format!("http://{addr}");

    let browser = Browser::start().await;
    sign_in_to_registry(&browser, &base, &read).await;
    browser.goto(&format!("{base}/orgs/default/sums")).await;
    // The alias's badge: where it points and its split.
    let aliases = browser
        .client()
        .find(Locator::XPath("//p[starts-with(normalize-space(), 'Aliases:')]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(aliases, "Aliases: prod → 1 · canary 3 at 10%");
    // The models table marks the model and its canary, and nothing on 2 any more.
    let mark = |number: u64| format!("//table/tbody/tr[td[1][normalize-space()='{number}']]/td[last()]");
    let marks = |number: u64| {
        let xpath = mark(number);
        let client = browser.client().clone();
        async move { client.find(Locator::XPath(&xpath)).await.unwrap().text().await.unwrap() }
    };
    assert_eq!(marks(1).await, "prod");
    assert_eq!(marks(2).await, "");
    assert_eq!(marks(3).await, "prod (canary 10%)");
    // The history, newest first: each move with its split and why.
    let rows = browser.client().find_all(Locator::Css("section.history tbody tr")).await.unwrap();
    let mut history = Vec::new();
    for row in rows {
        let cells = row.find_all(Locator::Css("td")).await.unwrap();
        let mut texts = Vec::new();
        for cell in cells.iter().skip(1) {
            texts.push(cell.text().await.unwrap());
        }
        history.push(texts);
    }
    let expected = [
        ["prod", "1 → 1 · canary 3 at 10%", "rollout of 3: step 10%"],
        ["prod", "1 · canary 2 at 10% → 1", rolled_back.as_str()],
        ["prod", "1 → 1 · canary 2 at 10%", "rollout of 2: step 10%"],
        ["prod", "created → 1", ""],
    ];
    assert_eq!(history.len(), expected.len(), "{history:?}");
    for (row, [alias, step, why]) in history.iter().zip(expected) {
        assert_eq!((row[0].as_str(), row[1].as_str(), row[3].as_str()), (alias, step, why), "{history:?}");
    }
    // A reason holding a script is shown as text, and never runs.
    assert_ne!(browser.client().title().await.unwrap(), "pwned");
    browser.shoot("registry-split").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_page_shows_the_split_it_follows() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    for scale in [1.0, 2.0] {
        register_model::<SumRunner>("sum").model(SumModel { scale }).register(&registry).unwrap();
    }
    let split = |number: u64, canary: Option<(u64, u8)>| {
        let canary = canary.map(|(number, percent)| Canary { number, percent });
        registry.set_alias("default", "sum", "prod", number, &AliasOptions { canary, ..Default::default() }).unwrap();
    };
    split(1, Some((2, 10)));
    let options = ServeOptions { follow_interval: Duration::from_millis(20), ..ServeOptions::default() };
    let serving = Serving::start(Arc::new(registry.clone()), &["sum:prod"], options).await;
    let home = format!("{}/", serving.url);

    let browser = Browser::start().await;
    browser.goto(&home).await;
    let card = "section.model[data-model=sum]";
    let badge = format!("{card} h2 [data-canary]");
    assert_eq!(browser.text(&badge).await, "canary 2 · 10%");
    assert_eq!(browser.attr(&badge, "data-canary").await.as_deref(), Some("2"));
    assert_eq!(browser.attr(&badge, "data-percent").await.as_deref(), Some("10"));
    let heading = browser.text(&format!("{card} h2")).await;
    assert!(heading.contains("number 1") && heading.contains("follows") && heading.contains("prod"), "{heading}");
    browser.shoot("serve-split").await;

    // The split grows: the page shows the new share once the server has followed it.
    split(1, Some((2, 50)));
    let grown = format!("{card} h2 [data-canary='2'][data-percent='50']");
    let text = browser.reload_until(&home, &grown, |t| t.is_some()).await;
    assert_eq!(text.as_deref(), Some("canary 2 · 50%"));
    // The page and the API say the same.
    let info: serde_json::Value =
        reqwest::get(format!("{}/models/sum", serving.url)).await.unwrap().json().await.unwrap();
    assert_eq!((info["canary"]["number"].clone(), info["canary"]["percent"].clone()), (json!(2), json!(50)), "{info}");

    // Promoted: 2 answers everything, and the badge is gone.
    split(2, None);
    browser.reload_until(&home, &format!("{card} h2"), |t| t.is_some_and(|t| t.contains("number 2"))).await;
    assert_eq!(browser.count(&badge).await, 0);
    drop(browser);
    serving.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_page_lists_the_models_it_could_load() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::open(dir.path()).unwrap();
    for repository in ["sum", "extra"] {
        register_model::<SumRunner>(repository).model(SumModel { scale: 1.0 }).register(&registry).unwrap();
    }
    let options = ServeOptions { repository_mode: RepositoryMode::Explicit, ..ServeOptions::default() };
    let serving = Serving::start(Arc::new(registry), &["sum:1"], options).await;
    let home = format!("{}/", serving.url);
    let http = reqwest::Client::new();
    let repository = |what: &str| http.post(format!("{}/v2/repository/models/extra/{what}", serving.url)).send();

    let browser = Browser::start().await;
    browser.goto(&home).await;
    assert_eq!(browser.count("section.model").await, 1);
    let extra = "section.others tr[data-model=extra]";
    assert_eq!(browser.attr(extra, "data-state").await.as_deref(), Some("UNAVAILABLE"));
    let row = browser.text(extra).await;
    assert!(row.contains("unavailable") && row.contains("not loaded"), "{row}");
    assert_eq!(browser.count("section.others tr[data-model=sum]").await, 0, "a loaded model is a card");
    browser.shoot("serve-others").await;
    // The table is below the cards: a picture of it alone.
    let others = browser.find("section.others").await;
    browser.client().execute("arguments[0].scrollIntoView()", vec![json!(others)]).await.unwrap();
    let table = others.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::write(dir.join("serve-others-table.png"), table).unwrap();

    // Loaded through the repository API: a card of its own, and nothing left to list.
    assert_eq!(repository("load").await.unwrap().status(), 200);
    browser.goto(&home).await;
    assert_eq!(browser.text("section.model[data-model=extra] h2 .badge.ready").await, "ready");
    assert_eq!(browser.count("section.model").await, 2);
    assert_eq!(browser.count("section.others").await, 0);

    // Unloaded: back in the table, saying so.
    assert_eq!(repository("unload").await.unwrap().status(), 200);
    browser.goto(&home).await;
    assert_eq!(browser.attr(extra, "data-state").await.as_deref(), Some("UNAVAILABLE"));
    assert!(browser.text(extra).await.contains("unloaded"));
    assert_eq!(browser.count("section.model").await, 1);
    drop(browser);
    serving.stop().await.unwrap();
}
