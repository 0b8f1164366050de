//! The protocol node's security: token authentication and TLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use eventfold::protocol::rustls::pki_types::ServerName;
use eventfold::protocol::{ServeOptions, TcpServer, Token, rustls};
use serde_json::{Value, json};

const SECRET: &str = "a-shared-secret-of-32-bytes-long";

/// A node in this process on a free loopback port; it runs until the test
/// binary ends.
fn node(options: ServeOptions) -> String {
    let (_dir, store) = crate::common::temp_store();
    // The directory must outlive the node, which runs until the binary ends.
    std::mem::forget(_dir);
    let server = TcpServer::bind(store, "127.0.0.1:0", false, options).unwrap();
    let addr = server.local_addr().unwrap().to_string();
    std::thread::spawn(move || server.run());
    addr
}

fn line(body: Value) -> String {
    format!("{}\n", json!({"src": "client", "dest": "eventstore", "body": body}))
}

/// Reads the next line's body, or `None` at the end of the connection.
fn next_body<R: BufRead>(r: &mut R) -> Option<Value> {
    let mut text = String::new();
    if r.read_line(&mut text).unwrap() == 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    Some(v["body"].clone())
}

fn plain(addr: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    // A node that stops answering fails the test instead of hanging it.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    BufReader::new(stream)
}

fn send<S: Read + Write>(c: &mut BufReader<S>, body: Value) -> Option<Value> {
    c.get_mut().write_all(line(body).as_bytes()).unwrap();
    next_body(c)
}

#[test]
fn the_right_token_opens_the_connection() {
    let addr = node(ServeOptions::default().with_token(Token::new(SECRET).unwrap()));
    let mut c = plain(&addr);
    let r = send(&mut c, json!({"type": "auth", "msg_id": 1, "token": SECRET})).unwrap();
    assert_eq!((r["type"].as_str(), r["in_reply_to"].as_u64()), (Some("auth_ok"), Some(1)), "{r}");
    let r = send(&mut c, json!({"type": "append", "msg_id": 2, "aggregate_id": "a-1", "event_type": "E", "event_data": {}, "version": 0})).unwrap();
    assert_eq!(r["type"], "appended", "{r}");
    let r = send(&mut c, json!({"type": "stats", "msg_id": 3})).unwrap();
    assert_eq!(r["head"], 1, "{r}");
}

#[test]
fn a_wrong_token_gets_one_error_and_the_connection_closes() {
    let addr = node(ServeOptions::default().with_token(Token::new(SECRET).unwrap()));
    let mut c = plain(&addr);
    // Requests pipelined behind the wrong token are not answered, but the
    // refusal still arrives.
    let mut lines = line(json!({"type": "auth", "msg_id": 1, "token": "a-shared-secret-of-32-bytes-lonG"}));
    lines.push_str(&line(json!({"type": "stats", "msg_id": 2})));
    c.get_mut().write_all(lines.as_bytes()).unwrap();
    let r = next_body(&mut c).unwrap();
    assert_eq!((r["code"].as_u64(), r["in_reply_to"].as_u64()), (Some(1001), Some(1)), "{r}");
    assert!(r["text"].as_str().unwrap().contains("wrong token"), "{r}");
    assert_eq!(next_body(&mut c), None, "the connection is closed after the one error");
}

#[test]
fn a_missing_token_gets_one_error_and_the_connection_closes() {
    let addr = node(ServeOptions::default().with_token(Token::new(SECRET).unwrap()));
    let mut c = plain(&addr);
    let r = send(&mut c, json!({"type": "read_all", "msg_id": 7})).unwrap();
    assert_eq!((r["code"].as_u64(), r["in_reply_to"].as_u64()), (Some(1001), Some(7)), "{r}");
    assert!(r["text"].as_str().unwrap().contains("read_all before auth"), "{r}");
    assert_eq!(next_body(&mut c), None);
    // Not JSON at all is no better.
    let mut c = plain(&addr);
    c.get_mut().write_all(b"hello\n").unwrap();
    assert_eq!(next_body(&mut c).unwrap()["code"], 1001);
    assert_eq!(next_body(&mut c), None);
}

/// A self-signed certificate for `localhost`, as PEM files, and the client
/// configuration that trusts it.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Arc<rustls::ClientConfig>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    (cert_path, key_path, Arc::new(client))
}

type TlsClient = BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn tls_client(addr: &str, config: &Arc<rustls::ClientConfig>) -> TlsClient {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let conn =
        rustls::ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    BufReader::new(rustls::StreamOwned::new(conn, tcp))
}

/// Requests, replies and pushed events over TLS, with a token, and a reply
/// far larger than one TLS record.
#[test]
fn tls_round_trip_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, client) = certificate(dir.path());
    let tls = eventfold::protocol::tls_server_config(&cert, &key).unwrap();
    let addr = node(ServeOptions::default().with_token(Token::new(SECRET).unwrap()).with_tls(tls));
    let mut c = tls_client(&addr, &client);
    let r = send(&mut c, json!({"type": "auth", "msg_id": 1, "token": SECRET})).unwrap();
    assert_eq!(r["type"], "auth_ok", "{r}");
    let r = send(&mut c, json!({"type": "subscribe", "msg_id": 2, "from_sequence": 1})).unwrap();
    assert_eq!(r["type"], "subscribed", "{r}");
    let pad = "x".repeat(100_000);
    c.get_mut()
        .write_all(
            line(json!({"type": "append", "msg_id": 3, "aggregate_id": "a-1", "event_type": "E", "event_data": {"pad": pad}, "version": 0}))
                .as_bytes(),
        )
        .unwrap();
    // The reply and the pushed event, in either order.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let b = next_body(&mut c).unwrap();
        seen.push(b["type"].as_str().unwrap().to_string());
        if b["type"] == "event" {
            assert_eq!(b["event"]["event_data"]["pad"].as_str().map(str::len), Some(100_000));
        }
    }
    seen.sort();
    assert_eq!(seen, ["appended", "event"]);
    let r = send(&mut c, json!({"type": "read_all", "msg_id": 4})).unwrap();
    assert_eq!(r["events"][0]["event_data"]["pad"].as_str().map(str::len), Some(100_000));
}

/// A client that speaks plain text to a TLS node gets one plain-text
/// error line saying so, and the node goes on serving TLS clients.
#[test]
fn a_plain_client_against_a_tls_node_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, client) = certificate(dir.path());
    let addr =
        node(ServeOptions::default().with_tls(eventfold::protocol::tls_server_config(&cert, &key).unwrap()));
    let mut c = plain(&addr);
    let r = send(&mut c, json!({"type": "stats", "msg_id": 1})).unwrap();
    assert_eq!(r["code"], 1001, "{r}");
    assert!(r["text"].as_str().unwrap().contains("TLS connections only"), "{r}");
    assert_eq!(next_body(&mut c), None);
    // A TLS client that trusts another certificate fails its handshake.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, _, stranger) = certificate(&other);
    let mut c = tls_client(&addr, &stranger);
    let mut text = String::new();
    let err = c
        .get_mut()
        .write_all(line(json!({"type": "stats", "msg_id": 1})).as_bytes())
        .and_then(|()| c.read_line(&mut text));
    assert!(err.is_err(), "{text:?}");
    // The node is unharmed.
    let mut c = tls_client(&addr, &client);
    let r = send(&mut c, json!({"type": "stats", "msg_id": 2})).unwrap();
    assert_eq!(r["type"], "stats_ok", "{r}");
}

/// The same through the CLI: `--token-file`, `--tls-cert`, `--tls-key`;
/// and a remote address without a token is refused.
#[test]
fn serve_flags_for_tokens_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cert, key, client) = certificate(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{SECRET}\n")).unwrap();

    let out = crate::cli::run(&data, &["serve", "--tcp", "0.0.0.0:0", "--allow-remote"]);
    let err = crate::cli::stderr(&out);
    assert!(
        !out.status.success() && err.contains("no token is set") && err.contains("--token-file"),
        "{err}"
    );
    let out = crate::cli::run(
        &data,
        &["serve", "--tcp", "127.0.0.1:0", "--token-file", dir.path().join("none").to_str().unwrap()],
    );
    assert!(crate::cli::stderr(&out).contains("--token-file"), "{}", crate::cli::stderr(&out));

    let mut child = crate::cli::bin()
        .arg("--data")
        .arg(&data)
        .args(["serve", "--tcp", "0.0.0.0:0", "--allow-remote", "--token-file"])
        .arg(&token)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("(tls, token required)"), "{first}");
    let port = first.trim().rsplit(':').next().unwrap().to_string();
    std::thread::spawn(move || for _ in stderr.lines() {});
    let mut c = tls_client(&format!("127.0.0.1:{port}"), &client);
    let r = send(&mut c, json!({"type": "stats", "msg_id": 1})).unwrap();
    assert_eq!(r["code"], 1001, "{r}");
    let mut c = tls_client(&format!("127.0.0.1:{port}"), &client);
    let r = send(&mut c, json!({"type": "auth", "msg_id": 1, "token": SECRET})).unwrap();
    assert_eq!(r["type"], "auth_ok", "{r}");
    let r = send(&mut c, json!({"type": "stats", "msg_id": 2})).unwrap();
    assert_eq!(r["type"], "stats_ok", "{r}");
    child.kill().unwrap();
    child.wait().unwrap();
}
