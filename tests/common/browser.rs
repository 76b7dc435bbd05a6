//! Headless Chromium driven through ChromeDriver's WebDriver API (JSON over HTTP), for
//! the dashboard's end-to-end tests. Debian's `chromium` and `chromium-driver` packages
//! provide both; where they are missing, [`Browser::start`] says plainly that the test
//! is skipped (or fails, with `HUBSPOT_OUTBOX_REQUIRE_CHROMIUM=1`, as CI sets).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session in a headless Chromium of its own.
pub struct Browser {
    /// Killed when the browser is dropped (a test that panics leaves no driver behind).
    _driver: tokio::process::Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new browser, or `None` (the test is skipped) where Chromium is not installed.
    pub async fn start(test: &str) -> Option<Self> {
        if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
            let why = format!(
                "{test}: SKIPPED: {CHROMIUM} or {DRIVER} is missing (apt-get install chromium chromium-driver)"
            );
            if std::env::var("HUBSPOT_OUTBOX_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1") {
                panic!("{why}, and HUBSPOT_OUTBOX_REQUIRE_CHROMIUM=1");
            }
            eprintln!("{why}");
            return None;
        }
        let mut driver = tokio::process::Command::new(DRIVER)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // "ChromeDriver was started successfully on port 37173."
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().unwrap();
                }
            }
            panic!("chromedriver ended without saying its port");
        })
        .await
        .expect("chromedriver said its port");
        // Its output is not read any more; let it go where it cannot block the driver.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Self {
            _driver: driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ]
            }
        }}});
        let session = browser.call("POST", "/session", caps).await;
        let id = session["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        Some(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("webdriver {method} {path}: {e}"),
        }
    }

    /// One WebDriver command; its error as text.
    async fn try_call(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        let answer = request.send().await.unwrap();
        let v: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        if let Some(e) = v["value"]["error"].as_str() {
            return Err(format!("{e}: {}", v["value"]["message"]));
        }
        Ok(v)
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url})).await;
    }

    /// Where the browser is.
    pub async fn url(&self) -> String {
        self.call("GET", "/url", Value::Null).await["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The first element `css` selects (its WebDriver id).
    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// How many elements `css` selects.
    pub async fn count(&self, css: &str) -> usize {
        let v = self
            .call(
                "POST",
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v["value"].as_array().map_or(0, Vec::len)
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call("POST", &format!("/element/{el}/click"), json!({}))
            .await;
    }

    /// Types `text` into the element `css` selects, after clearing it.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call("POST", &format!("/element/{el}/clear"), json!({}))
            .await;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// The visible text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.call("GET", &format!("/element/{el}/text"), Value::Null)
            .await["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs `script` in the page (WebDriver's, not the page's: the page's CSP does not
    /// apply) and returns its value.
    pub async fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await["value"]
            .clone()
    }

    /// Waits until the page's main text contains `what`.
    pub async fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // The page may be between two documents: then it is asked again.
            let script = json!({"script": "return document.body ? document.body.innerText : '';", "args": []});
            let text = match self.try_call("POST", "/execute/sync", script).await {
                Ok(v) => v["value"].as_str().unwrap_or("").to_owned(),
                Err(e) => e,
            };
            if text.contains(what) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what:?}: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the window, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.call("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session and the browser (the driver ends when this is dropped).
    pub async fn quit(self) {
        self.call("DELETE", "", Value::Null).await;
    }
}

impl Drop for Browser {
    /// A test that panics never ends its session: its Chromium (the driver's child, which
    /// outlives it) is found by its own profile directory and ended.
    fn drop(&mut self) {
        let profile = format!("--user-data-dir={}", self._profile.path().display());
        let _ = std::process::Command::new("pkill")
            .arg("-f")
            .arg(profile)
            .status();
    }
}
