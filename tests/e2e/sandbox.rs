use crate::support::{Apps, Edge, get, upstream};

#[tokio::test]
async fn guests_see_no_host_files_or_environment() {
    let apps = Apps::new();
    apps.add("sandbox");
    let edge = Edge::start(apps.path(), &[]);
    let resp = get(edge.addr, "sandbox.localhost", "/").await;
    assert_eq!(resp.status, 200);
    let body = resp.body;
    assert!(body.contains("read /etc/passwd: denied"), "{body}");
    assert!(body.contains("list /: denied"), "{body}");
    assert!(body.contains("list .: denied"), "{body}");
    assert!(
        body.contains("env: \n"),
        "the host environment leaked: {body}"
    );
    // Guest output reaches the log, prefixed with the app.
    edge.expect_log("[sandbox] sandbox guest says hello on stdout");
    edge.expect_log("[sandbox] sandbox guest says hello on stderr");
}

#[tokio::test]
async fn the_manifest_sets_the_guest_environment() {
    let apps = Apps::new();
    apps.add("sandbox")
        .manifest("sandbox", "[env]\nGREETING = \"hi\"\nMODE = \"test\"\n");
    let edge = Edge::start(apps.path(), &[]);
    let body = get(edge.addr, "sandbox.localhost", "/").await.body;
    assert!(body.contains("env: GREETING=hi,MODE=test\n"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_is_denied_unless_listed() {
    let up = upstream().await;
    let apps = Apps::new();
    apps.add("outbound").add_as("outbound", "allowed").manifest(
        "allowed",
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]\n",
            up.port()
        ),
    );
    let edge = Edge::start(apps.path(), &[]);
    let path = format!("/?url=http://127.0.0.1:{}/", up.port());
    let denied = get(edge.addr, "outbound.localhost", &path).await;
    assert_eq!(denied.status, 502, "{denied:?}");
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
    edge.expect_log("denied outbound request");
    let allowed = get(edge.addr, "allowed.localhost", &path).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.body, "upstream 200 OK: upstream says hi");
    // The allow-list is exact: another port on the same host is still denied.
    let other = format!(
        "/?url=http://127.0.0.1:{}/",
        up.port().wrapping_add(1).max(1)
    );
    let resp = get(edge.addr, "allowed.localhost", &other).await;
    assert_eq!(resp.status, 502);
    assert!(resp.body.contains("HttpRequestDenied"), "{}", resp.body);
}
