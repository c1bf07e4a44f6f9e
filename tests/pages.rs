//! The HTML side under attack: markup and quote-breaking payloads in every path segment and
//! query value of every route never come back raw, and every response carries the security
//! headers (a per-response CSP nonce on pages, `nosniff` everywhere). Real server, raw HTTP.

mod common;

use common::*;

/// Payloads that break out of text, attributes and the `<title>`, percent-encoded as a
/// browser would send them in a URL, with the raw string that must never come back.
const PAYLOADS: [(&str, &str); 5] = [
    (
        "%3C%2Ftitle%3E%3Cscript%3Ealert(document.domain)%3C%2Fscript%3E",
        "</title><script>alert(document.domain)</script>",
    ),
    (
        "%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
        "\"><img src=x onerror=alert(1)>",
    ),
    (
        "%27%3E%3Csvg%20onload%3Dalert(1)%3E",
        "'><svg onload=alert(1)>",
    ),
    (
        "%3C%2Fscript%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "</script><script>alert(1)</script>",
    ),
    ("%3Cb%3Ebold%3C%2Fb%3E", "<b>bold</b>"),
];

/// A server function's refusal as Leptos puts it in the URL after a form post without the
/// script: `ServerError|message`, base64url-encoded, then percent-encoded as a query value.
fn refusal(message: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = format!("ServerError|{message}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | ((*b as u32) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push_str("%3D");
            }
        }
    }
    out
}

/// The parts of a response where a payload could have landed.
fn leaks(raw: &str, head: &str, body: &str) -> bool {
    body.contains(raw) || head.contains(&raw.to_lowercase())
}

#[tokio::test]
async fn markup_in_any_path_segment_or_query_value_never_comes_back_raw() {
    // The real binary: many page loads (see `every_page_load_is_answered_in_full`).
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("chat.db"));
    let server = Process::start(&config, None).await;
    for (encoded, raw) in PAYLOADS {
        let paths = [
            format!("/r/{encoded}"),
            format!("/r/general?{encoded}={encoded}"),
            format!("/?room={encoded}&q={encoded}"),
            format!("/{encoded}"),
            format!("/r/{encoded}/{encoded}"),
            format!("/pkg/{encoded}"),
            format!("/api/{encoded}"),
            format!("/healthz?{encoded}"),
            format!("/ws?{encoded}"),
            // The query values the page reads: an invitation (written into a hidden input),
            // the message to jump to, and a form's refusal (shown under its field), both
            // undecodable and carrying the payload as its message.
            format!("/?invite={encoded}"),
            format!("/r/general?message={encoded}"),
            format!("/?__path=/api/sign_up&__err={encoded}"),
            format!("/?__path=/api/sign_up&__err={}", refusal(raw)),
            format!("/?__path=/api/sign_in&__err={}", refusal(raw)),
            format!("/files/{encoded}"),
            format!("/files/{encoded}/thumb"),
        ];
        for path in paths {
            let (status, head, body) = http_response(server.addr, &path, &[]).await;
            let body = String::from_utf8_lossy(&body);
            assert!(
                !leaks(raw, &head, &body),
                "{path} ({status}) echoed {raw:?}:\n{head}\n{body}"
            );
        }
    }
    server.kill9().await;
}

#[tokio::test]
async fn an_invalid_room_gets_the_plain_title_and_a_valid_one_its_name() {
    let server = TestServer::start().await;
    let (status, _, body) = http_response(
        server.addr,
        "/r/%3C%2Ftitle%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        &[],
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200);
    assert!(body.contains("<title>hubbub</title>"), "{body}");
    assert!(body.contains("Room names are 1 to 32"), "{body}");
    let (_, _, body) = http_response(server.addr, "/r/dev-ops", &[]).await;
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("<title>#dev-ops · hubbub</title>"), "{body}");
}

/// The nonce of the page's policy, checked to be on every script of the page.
fn page_nonce(head: &str, body: &str) -> String {
    let policy = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_else(|| panic!("no CSP on the page:\n{head}"));
    for needed in [
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
        "'wasm-unsafe-eval'",
    ] {
        assert!(policy.contains(needed), "{needed} missing from {policy}");
    }
    let script_src = policy
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src "))
        .unwrap_or_else(|| panic!("no script-src in {policy}"));
    assert!(!script_src.contains("unsafe-inline"), "{policy}");
    assert!(!script_src.contains(" 'unsafe-eval'"), "{policy}");
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {policy}"))
        .to_string();
    // The policy is lower-cased with the head; the page carries the nonce as generated.
    let scripts: Vec<&str> = body.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "the page has no script");
    for script in scripts {
        let tag = script.split('>').next().unwrap();
        assert!(
            tag.to_lowercase().contains(&format!("nonce=\"{nonce}\"")),
            "a script without the nonce: <script{tag}>"
        );
    }
    nonce
}

#[tokio::test]
async fn pages_carry_a_fresh_nonce_policy_and_every_response_nosniff() {
    let server = TestServer::start().await;
    let mut nonces = Vec::new();
    for path in ["/", "/r/dev", "/", "/no/such/page"] {
        let (_, head, body) = http_response(server.addr, path, &[]).await;
        let body = String::from_utf8_lossy(&body);
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{path}: {head}"
        );
        assert!(
            head.contains("referrer-policy: same-origin"),
            "{path}: {head}"
        );
        nonces.push(page_nonce(&head, &body));
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "every response has its own nonce");
    // Not pages: nosniff, and a policy that allows nothing.
    std::fs::create_dir_all(server.dir.path().join("pkg")).unwrap();
    std::fs::write(server.dir.path().join("pkg/hubbub.js"), "export {}").unwrap();
    for path in ["/pkg/hubbub.js", "/healthz", "/metrics"] {
        let (status, head, _) = http_response(server.addr, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            head.contains("x-content-type-options: nosniff"),
            "{path}: {head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none'; frame-ancestors 'none'"),
            "{path}: {head}"
        );
    }
}

/// Whether a page came whole: the document to its end, then the scripts that hand the
/// server's data to hydration. (Type-erased components put hydration markers, `<!>`, between
/// the closing tags.)
fn complete(body: &str) -> bool {
    body.find("</body>")
        .and_then(|at| body[at..].find("</html>"))
        .is_some()
        && body.trim_end().ends_with("</script>")
}

#[tokio::test]
async fn every_page_load_is_answered_in_full() {
    // Rendering runs on any worker thread, and its reactive owner can be dropped on another:
    // a component keeping thread-bound state, or a signal read outside the reactive arena,
    // panics there now and then, and the browser gets an empty response. The real binary (a
    // multi-threaded runtime, as in production), four page loads at a time.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &dir.path().join("chat.db"));
    let server = Process::start(&config, None).await;
    let addr = server.addr;
    let loads = (0..4).map(|stream| {
        tokio::spawn(async move {
            for i in 0..500 {
                let path = if (i + stream) % 2 == 0 { "/" } else { "/r/dev" };
                let (status, _, body) = http_response(addr, path, &[]).await;
                let body = String::from_utf8_lossy(&body);
                assert_eq!(status, 200, "load {i} of {path}");
                // The document, then the scripts that hand the server's data to hydration.
                assert!(complete(&body), "load {i} of {path}: {body}");
            }
        })
    });
    for load in futures::future::join_all(loads).await {
        load.unwrap();
    }
    server.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_answered_while_other_servers_start_in_the_same_process() {
    // Leptos marks route-list generation with a process-global flag, and a resource first
    // polled while it is set waits for ever (leptos-rs/leptos#4773): a page requested while
    // another server in the process started never got its head. Tests run many servers in one
    // process, and so can anyone embedding hubbub.
    let server = TestServer::start().await;
    let starting = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for _ in 0..30 {
                TestServer::start().await.shutdown().await;
            }
        })
    });
    let mut loads = 0;
    while !starting.is_finished() || loads < 50 {
        let load = tokio::time::timeout(WAIT, http_response(server.addr, "/", &[]));
        let (status, _, body) = load.await.expect("the page was not answered");
        assert_eq!(status, 200, "load {loads}");
        assert!(complete(&String::from_utf8_lossy(&body)));
        loads += 1;
    }
    starting.join().unwrap();
}

/// What a release build leaves in `pkg/` (make build): a file with its hash in its name, and
/// its brotli and gzip copies (here marked, to see which one is sent).
fn built_file(pkg: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::create_dir_all(pkg).unwrap();
    let bytes: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(pkg.join(name), &bytes).unwrap();
    std::fs::write(pkg.join(format!("{name}.br")), b"brotli copy").unwrap();
    std::fs::write(pkg.join(format!("{name}.gz")), b"gzip copy").unwrap();
    bytes
}

#[tokio::test]
async fn hashed_files_are_sent_precompressed_and_cached_for_a_year() {
    let dir = tempfile::tempdir().unwrap();
    let plain = built_file(&dir.path().join("pkg"), "hubbub.Xq3_9a.wasm");
    let site = leptos::config::LeptosOptions::builder()
        .output_name("hubbub")
        .site_root(dir.path().to_string_lossy().to_string())
        .hash_files(true)
        .build();
    let hub = test_config(dir.path());
    let server = TestServer::start_site(dir, hub, site).await;
    let path = "/pkg/hubbub.Xq3_9a.wasm";

    for (accept, encoding, body) in [
        (
            "gzip, deflate, br, zstd",
            Some("br"),
            b"brotli copy".to_vec(),
        ),
        ("gzip", Some("gzip"), b"gzip copy".to_vec()),
        ("identity", None, plain.clone()),
    ] {
        let (status, head, sent) =
            http_response(server.addr, path, &[("Accept-Encoding", accept)]).await;
        assert_eq!(status, 200, "{accept}: {head}");
        assert_eq!(sent, body, "{accept}: {head}");
        match encoding {
            Some(e) => assert!(
                head.contains(&format!("content-encoding: {e}\r\n")),
                "{head}"
            ),
            None => assert!(!head.contains("content-encoding"), "{head}"),
        }
        assert!(head.contains("content-type: application/wasm"), "{head}");
        assert!(
            head.contains("cache-control: public, max-age=31536000, immutable"),
            "{head}"
        );
        assert!(head.contains("vary: accept-encoding"), "{head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    }
    // A name from an older release: gone, and not cached as if it were.
    let (status, head, _) = http_response(server.addr, "/pkg/hubbub.old.wasm", &[]).await;
    assert_eq!(status, 404, "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    // Outside the directory: refused whatever the encoding of the dots.
    for escape in [
        "/pkg/../chat.db",
        "/pkg/%2e%2e/chat.db",
        "/pkg/..%2fchat.db",
    ] {
        let (status, _, body) = http_response(server.addr, escape, &[]).await;
        assert_ne!(status, 200, "{escape}");
        assert!(
            !String::from_utf8_lossy(&body).contains("SQLite"),
            "{escape}"
        );
    }
}

#[tokio::test]
async fn without_hashes_files_and_pages_are_revalidated_and_no_stale_copy_is_sent() {
    // `make dev`: cargo-leptos rewrites files under the same name; a `.br` left from an earlier
    // build must not be sent in place of the new file.
    let server = TestServer::start().await;
    let pkg = server.dir.path().join("pkg");
    let plain = built_file(&pkg, "hubbub.js");
    let (status, head, body) =
        http_response(server.addr, "/pkg/hubbub.js", &[("Accept-Encoding", "br")]).await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, plain, "{head}");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    // Still compressed for a browser that takes gzip, per request.
    let (status, head, body) = http_response(
        server.addr,
        "/pkg/hubbub.js",
        &[("Accept-Encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
    assert!(body.len() < plain.len() && body != b"gzip copy", "{head}");
    // Pages name the current files: always revalidated.
    for page in ["/", "/r/lobby"] {
        let (status, head, _) = http_response(server.addr, page, &[]).await;
        assert_eq!(status, 200, "{page}");
        assert!(head.contains("cache-control: no-cache"), "{page}: {head}");
    }
}
