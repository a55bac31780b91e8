//! Limits below HTTP and on voice sockets, over the real binaries: a header sent a byte at a
//! time, idle connections, the connection cap, and the caps on sockets and speech streams.

use std::time::Duration;

use blob_testkit::client::{Api, VoiceSocket};
use blob_testkit::stack::{Stack, StackOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const QUICK: Duration = Duration::from_secs(10);

fn gateway_env(vars: &[(&'static str, &str)]) -> StackOptions {
    StackOptions {
        extra_env: vars.iter().map(|(k, v)| ("gateway", *k, (*v).to_owned())).collect(),
        ..StackOptions::default()
    }
}

/// Reads until the server closes the connection; the bytes read, or `None` if it is still
/// open at the deadline.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// A socket admitted to `session_id` (greeted with `greeting`), retrying while the gateway
/// is full (`1013`) because an earlier socket has not yet released its place.
async fn admitted(ws: &str, token: &str, session_id: &str, greeting: &str) -> VoiceSocket {
    blob_testkit::eventually("a place for the socket", QUICK, || async move {
        let mut socket = VoiceSocket::connect(ws, token, session_id).await;
        match socket.next_json(QUICK).await {
            Ok(hello) if hello["action"] == greeting => Some(socket),
            Ok(other) => panic!("{other}"),
            Err(Some(1013)) => None,
            Err(code) => panic!("closed with {code:?}"),
        }
    })
    .await
}

async fn metric(stack: &Stack, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", stack.admin_url("gateway")))
        .await
        .expect("the admin port answers")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_sent_slowly_is_cut_off_and_an_idle_connection_is_closed() {
    let stack = Stack::start(gateway_env(&[
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("WS_HEARTBEAT_INTERVAL_SECONDS", "2"),
        ("WS_MAX_MISSED_PONGS", "2"),
        ("HTTP_IDLE_TIMEOUT_SECONDS", "7"),
    ]))
    .await;
    let address = format!("127.0.0.1:{}", stack.gateway_port);

    // Half a request, then nothing: the connection is closed, not held for ever.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: blob\r\nX-Slow: ").await.unwrap();
    let answered = read_until_closed(&mut slow, Duration::from_secs(30)).await;
    let answered = answered.expect("a connection whose header never ends is closed");
    let answered = String::from_utf8_lossy(&answered);
    assert!(!answered.contains("200 OK"), "no request was served: {answered}");

    // A kept-alive connection serves its requests, then is closed once left idle.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    for _ in 0..2 {
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: blob\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(QUICK, idle.read(&mut buf)).await.unwrap().unwrap();
        let response = String::from_utf8_lossy(&buf[..n]);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    let closed = read_until_closed(&mut idle, Duration::from_secs(30)).await;
    assert_eq!(closed.as_deref(), Some(&[][..]), "an idle connection is closed, silently");

    // A voice socket that answers the heartbeat is never idle: it outlives the idle timeout.
    let api = Api::new(&stack.http_url());
    let token = api.exchange(&stack.certs.id_token("uid-talk", "talk@example.com")).await;
    let child = api.create_child(&token, "Leo", 1).await;
    let session = api.open_session(&token, &child).await;
    let session_id = session["session_id"].as_str().unwrap();
    let mut socket = VoiceSocket::connect(&stack.ws_url(), &token, session_id).await;
    socket.wait_for("session.created", QUICK).await;
    // Its heartbeat pings are answered as they are read; two idle timeouts pass with no close.
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut pings = 0;
    while let Some(message) =
        socket.next_json_within(until.saturating_duration_since(tokio::time::Instant::now())).await
    {
        let message = message.unwrap_or_else(|code| {
            panic!("the socket was closed ({code:?}) though the client answered every ping")
        });
        pings += usize::from(message["action"] == "ping");
    }
    assert!(pings >= 3, "{pings} heartbeats in 15 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_capped_per_gateway_and_per_account_and_connections_wait_for_a_place() {
    let stack = Stack::start(gateway_env(&[
        ("WS_MAX_SOCKETS", "2"),
        ("WS_MAX_SOCKETS_PER_USER", "1"),
        ("HTTP_MAX_CONNECTIONS", "4"),
        // The sockets and TCP connections held below are never read: nothing may close them
        // for silence while the test counts them, however slow a loaded machine makes it.
        ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "3600"),
        ("WS_HEARTBEAT_INTERVAL_SECONDS", "600"),
        ("HTTP_IDLE_TIMEOUT_SECONDS", "3600"),
        ("RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "0"),
    ]))
    .await;
    let api = Api::new(&stack.http_url());
    let ws = stack.ws_url();
    let mum = api.exchange(&stack.certs.id_token("uid-mum", "mum@example.com")).await;
    let ivy = api.create_child(&mum, "Ivy", 1).await;
    let leo = api.create_child(&mum, "Leo", 2).await;
    let ivy_session = api.open_session(&mum, &ivy).await["session_id"].as_str().unwrap().to_owned();
    let leo_session = api.open_session(&mum, &leo).await["session_id"].as_str().unwrap().to_owned();

    let mut first = VoiceSocket::connect(&ws, &mum, &ivy_session).await;
    first.wait_for("session.created", QUICK).await;
    // A second session of the same account on this gateway: over the account's cap.
    let mut second = VoiceSocket::connect(&ws, &mum, &leo_session).await;
    assert_eq!(second.close_code(QUICK).await, Some(4429), "{:?}", second.received);
    second.close().await;
    // A reconnect to the same session is never refused: it takes the session over.
    let _again = admitted(&ws, &mum, &ivy_session, "session.resumed").await;
    assert_eq!(first.close_code(QUICK).await, Some(4009));
    // The close handshake completed, so the server lets the connection go.
    first.close().await;

    // Another family fills the gateway's second place (once the taken-over socket has gone);
    // a third is told to try again.
    let dad = api.exchange(&stack.certs.id_token("uid-dad", "dad@example.com")).await;
    let max = api.create_child(&dad, "Max", 3).await;
    let max_session = api.open_session(&dad, &max).await["session_id"].as_str().unwrap().to_owned();
    let dads = admitted(&ws, &dad, &max_session, "session.created").await;
    let gran = api.exchange(&stack.certs.id_token("uid-gran", "gran@example.com")).await;
    let ada = api.create_child(&gran, "Ada", 0).await;
    let ada_session =
        api.open_session(&gran, &ada).await["session_id"].as_str().unwrap().to_owned();
    let mut grans = VoiceSocket::connect(&ws, &gran, &ada_session).await;
    assert_eq!(grans.close_code(QUICK).await, Some(1013), "{:?}", grans.received);
    grans.close().await;
    // Refused before admission: her session waits, untouched, for a place.
    let waiting = api
        .call(reqwest::Method::GET, &format!("/api/v1/sessions/{ada_session}"), Some(&gran), None)
        .await;
    assert_eq!(waiting.status, 200, "{}", waiting.body);
    // Once Dad's socket ends, Gran gets the place.
    dads.close().await;
    let _grans = admitted(&ws, &gran, &ada_session, "session.created").await;

    // The two voice sockets hold two connections (the API client's pool is closed); two
    // silent TCP connections fill the cap of four.
    drop(api);
    blob_testkit::eventually("only the voice sockets' connections", QUICK, || async {
        (metric(&stack, "blob_gateway_http_connections").await == 2.0).then_some(())
    })
    .await;
    // Two voice sockets hold two connections; two silent TCP connections fill the cap of four.
    let address = format!("127.0.0.1:{}", stack.gateway_port);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(&address).await.unwrap());
    }
    blob_testkit::eventually("four open connections", QUICK, || async {
        (metric(&stack, "blob_gateway_http_connections").await == 4.0).then_some(())
    })
    .await;
    // A fifth connection waits in the backlog: its request is not served while the cap holds.
    let mut fifth = TcpStream::connect(&address).await.unwrap();
    fifth.write_all(b"GET /health HTTP/1.1\r\nHost: blob\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(500), fifth.read(&mut buf)).await;
    assert!(early.is_err(), "a connection over the cap was served: {early:?}");
    assert!(metric(&stack, "blob_gateway_connection_cap_reached_total").await >= 1.0);
    // One closes: the waiting connection is served.
    drop(held.pop());
    let n = tokio::time::timeout(QUICK, fifth.read(&mut buf)).await.expect("served").unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recogniser_at_its_stream_cap_sends_the_socket_to_try_again() {
    let stack = Stack::start(StackOptions {
        extra_env: vec![("stt-service", "STT_MAX_STREAMS", "1".to_owned())],
        ..StackOptions::default()
    })
    .await;
    let api = Api::new(&stack.http_url());
    let ws = stack.ws_url();
    let mut sessions = Vec::new();
    for uid in ["uid-one", "uid-two"] {
        let token = api.exchange(&stack.certs.id_token(uid, &format!("{uid}@example.com"))).await;
        let child = api.create_child(&token, "Kit", 1).await;
        let session =
            api.open_session(&token, &child).await["session_id"].as_str().unwrap().to_owned();
        sessions.push((token, session));
    }
    let mut first = VoiceSocket::connect(&ws, &sessions[0].0, &sessions[0].1).await;
    first.wait_for("session.created", QUICK).await;
    let mut second = VoiceSocket::connect(&ws, &sessions[1].0, &sessions[1].1).await;
    second.wait_for("session.created", QUICK).await;
    let busy = second.wait_for("error", QUICK).await;
    assert_eq!(busy["payload"]["code"], "STT_BUSY", "{busy}");
    assert_eq!(second.close_code(QUICK).await, Some(1013));
    // The first stream ends with its socket; the second family's reconnect gets the stream:
    // its audio is taken (acknowledged only once a speech stream holds it).
    first.close().await;
    let (token, session) = (&sessions[1].0, &sessions[1].1);
    blob_testkit::eventually("the recogniser's place for the second socket", QUICK, || {
        let (ws, token, session) = (ws.clone(), token.clone(), session.clone());
        async move {
            let mut socket = VoiceSocket::connect(&ws, &token, &session).await;
            socket.wait_for("session.resumed", QUICK).await;
            socket.send_speech_chunk(&[0i16; 320]).await;
            let acked = socket
                .wait_until(QUICK, |m| m["action"] == "audio_ack" || m["action"] == "error")
                .await?;
            (acked["action"] == "audio_ack").then_some(())
        }
    })
    .await;
}
