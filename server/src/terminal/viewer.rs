//! One viewer's WebSocket loop, written against `Stream`/`Sink` so it is testable without a socket.
//!
//! Binary frames carry raw terminal bytes both ways; text frames carry JSON control messages
//! (see `protocol.rs`). The loop ends when the client leaves, goes silent past the keepalive, or
//! the shell ends (after telling the client why).
//!
//! A client that breaks the WebSocket protocol gets the close frame RFC 6455 names for it before
//! the connection goes (see [`ClientFault`]): 1002 for a protocol error (unmasked, reserved bits
//! or opcodes, fragmented or oversized control frames, stray continuations, bad close frames),
//! 1007 for a text message that is not UTF-8, 1009 for a message past `max_message_bytes`.
//! Well-formed frames that are not docklab messages (a text frame that is not a control message
//! this server knows) get an `error` control message and the connection stays: a client bug
//! must not cost the learner their terminal.

use axum::extract::ws::{CloseFrame, Message};
use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::hub::{HubEvent, Viewer};
use super::protocol::{self, ClientControl, ServerControl, TerminalStatus};
use crate::config::TerminalConfig;

/// WebSocket close code for a normal end (the shell ended).
const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code for "service restart": the machine is being reset; reconnect.
const CLOSE_RESTART: u16 = 1012;
/// WebSocket close codes for a client that broke the protocol (RFC 6455, 7.4.1).
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_TOO_BIG: u16 = 1009;

/// A read error from the client's side of the socket, as the close frame it deserves.
pub trait ClientFault {
    /// The close frame to send before hanging up; `None` when there is nobody left to tell (the
    /// connection dropped) or the error is the server's own.
    fn close_frame(&self) -> Option<CloseFrame>;
}

impl ClientFault for std::convert::Infallible {
    fn close_frame(&self) -> Option<CloseFrame> {
        match *self {}
    }
}

impl ClientFault for axum::Error {
    fn close_frame(&self) -> Option<CloseFrame> {
        use tungstenite::error::{Error, ProtocolError};
        let error = std::error::Error::source(self)?.downcast_ref::<Error>()?;
        let code = match error {
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return None,
            Error::Protocol(_) => CLOSE_PROTOCOL,
            Error::Utf8(_) => CLOSE_INVALID_DATA,
            Error::Capacity(_) => CLOSE_TOO_BIG,
            _ => return None,
        };
        // The reason is tungstenite's own sentence (no client bytes in it), cut to fit a control frame.
        let reason: String = error.to_string().chars().take(120).collect();
        Some(CloseFrame { code, reason: reason.into() })
    }
}

/// Why the loop stopped, for the logs.
#[derive(Debug, PartialEq, Eq)]
pub enum ViewerExit {
    ClientLeft,
    ClientSilent,
    /// The client broke the WebSocket protocol; it was sent this close code.
    ProtocolError(u16),
    ShellEnded(String),
    Restarting(String),
}

/// Sends a viewer the replay and live output, and forwards its keystrokes and resizes.
pub async fn run_viewer<S, R, E>(mut sink: S, mut stream: R, mut viewer: Viewer, config: &TerminalConfig) -> ViewerExit
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: ClientFault,
{
    let chunk = config.max_output_frame.max(1);
    if send_control(&mut sink, &ServerControl::status(TerminalStatus::Ready, None)).await.is_err()
        || send_output(&mut sink, &viewer.replay, chunk).await.is_err()
    {
        return ViewerExit::ClientLeft;
    }
    for control in [viewer.checks.take(), viewer.ports.take()].into_iter().flatten() {
        if send_control(&mut sink, &control).await.is_err() {
            return ViewerExit::ClientLeft;
        }
    }
    if let Some(reason) = viewer.ended.take() {
        return end(&mut sink, reason).await;
    }

    let input = viewer.input();
    let mut pending_input: Option<Bytes> = None;
    let mut ping = tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let silence_limit = config.ping_interval * 3;
    let mut last_heard = Instant::now();
    let mut controls_open = true;

    loop {
        tokio::select! {
            event = viewer.events.recv() => match event {
                Ok(HubEvent::Output(bytes)) => {
                    if send_output(&mut sink, &bytes, chunk).await.is_err() {
                        return ViewerExit::ClientLeft;
                    }
                }
                Ok(HubEvent::Ended(reason)) => return end(&mut sink, reason).await,
                Ok(HubEvent::Restarting(reason)) => {
                    let status = ServerControl::status(TerminalStatus::Reconnecting, Some(reason.clone()));
                    let _ = send_control(&mut sink, &status).await;
                    let close = CloseFrame { code: CLOSE_RESTART, reason: "the machine is being reset".into() };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return ViewerExit::Restarting(reason);
                }
                Err(RecvError::Lagged(skipped)) => tracing::debug!(skipped, "viewer fell behind; output skipped"),
                Err(RecvError::Closed) => return end(&mut sink, "the terminal closed".to_owned()).await,
            },
            // Keystrokes wait here for room in the shell's input channel, without stopping output.
            permit = reserve(&input), if pending_input.is_some() => {
                if let (Some(permit), Some(bytes)) = (permit, pending_input.take()) {
                    permit.send(bytes);
                }
            },
            message = stream.next(), if pending_input.is_none() => {
                let message = match message {
                    Some(Ok(message)) => message,
                    Some(Err(err)) => return fault(&mut sink, &err).await,
                    None => return ViewerExit::ClientLeft,
                };
                last_heard = Instant::now();
                match message {
                    Message::Binary(bytes) => {
                        if input.is_some() && !bytes.is_empty() {
                            pending_input = Some(bytes);
                        }
                    }
                    Message::Text(text) => {
                        if let Some(reply) = handle_control(&viewer, text.as_str()) {
                            if send_control(&mut sink, &reply).await.is_err() {
                                return ViewerExit::ClientLeft;
                            }
                        }
                    }
                    Message::Close(_) => {
                        // Sends the close reply the WebSocket layer queued (1002 for a bad close code).
                        let _ = sink.close().await;
                        return ViewerExit::ClientLeft;
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            },
            control = viewer.controls.recv(), if controls_open => match control {
                Ok(control) => {
                    if send_control(&mut sink, &control).await.is_err() {
                        return ViewerExit::ClientLeft;
                    }
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => controls_open = false,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > silence_limit {
                    return ViewerExit::ClientSilent;
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return ViewerExit::ClientLeft;
                }
            },
        }
    }
}

async fn reserve(input: &Option<tokio::sync::mpsc::Sender<Bytes>>) -> Option<tokio::sync::mpsc::Permit<'_, Bytes>> {
    input.as_ref()?.reserve().await.ok()
}

/// Applies a control message; returns the error frame to send back, if any.
fn handle_control(viewer: &Viewer, text: &str) -> Option<ServerControl> {
    match protocol::parse_client(text) {
        Ok(ClientControl::Resize { cols, rows }) => {
            // parse_client validated the bounds, which fit in u16.
            let (cols, rows) = (cols as u16, rows as u16);
            match viewer.resize(cols, rows) {
                Ok(()) => None,
                Err(err) => {
                    tracing::debug!(%err, "resize failed");
                    Some(ServerControl::error(format!("the terminal could not be resized: {err}")))
                }
            }
        }
        Err(message) => Some(ServerControl::error(message)),
    }
}

/// Answers a protocol violation with its close code (when the client is still there to hear it).
async fn fault<S: Sink<Message> + Unpin, E: ClientFault>(sink: &mut S, err: &E) -> ViewerExit {
    let Some(close) = err.close_frame() else { return ViewerExit::ClientLeft };
    tracing::info!(code = close.code, reason = %close.reason, "client broke the WebSocket protocol");
    let code = close.code;
    let _ = sink.send(Message::Close(Some(close))).await;
    let _ = sink.close().await;
    ViewerExit::ProtocolError(code)
}

async fn end<S: Sink<Message> + Unpin>(sink: &mut S, reason: String) -> ViewerExit {
    let _ = send_control(sink, &ServerControl::status(TerminalStatus::Ended, Some(reason.clone()))).await;
    let close = CloseFrame { code: CLOSE_NORMAL, reason: "shell ended".into() };
    let _ = sink.send(Message::Close(Some(close))).await;
    ViewerExit::ShellEnded(reason)
}

pub async fn send_control<S: Sink<Message> + Unpin>(sink: &mut S, control: &ServerControl) -> Result<(), S::Error> {
    sink.send(Message::Text(control.to_json().into())).await
}

async fn send_output<S: Sink<Message> + Unpin>(sink: &mut S, bytes: &Bytes, chunk: usize) -> Result<(), S::Error> {
    let mut offset = 0;
    while offset < bytes.len() {
        let end = (offset + chunk).min(bytes.len());
        sink.send(Message::Binary(bytes.slice(offset..end))).await?;
        offset = end;
    }
    Ok(())
}

/// How long tests wait for something that should happen at once.
#[cfg(test)]
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;

    use super::*;
    use crate::terminal::hub::{TerminalHub, ViewerMode};
    use crate::testing::FakePty;

    /// A running viewer loop and the client's ends of its socket.
    struct Client {
        to_server: mpsc::Sender<Result<Message, std::convert::Infallible>>,
        from_server: mpsc::Receiver<Message>,
        done: tokio::task::JoinHandle<ViewerExit>,
    }

    impl Client {
        async fn start(hub: &TerminalHub, mode: ViewerMode, terminal: Option<sandbox::Terminal>) -> Client {
            let config = TerminalConfig { max_output_frame: 4, ..TerminalConfig::default() };
            Client::start_with(hub, mode, terminal, config).await
        }

        async fn start_with(
            hub: &TerminalHub,
            mode: ViewerMode,
            terminal: Option<sandbox::Terminal>,
            config: TerminalConfig,
        ) -> Client {
            let viewer = hub.attach(mode, || async { Ok(terminal.expect("one shell only")) }).await.unwrap();
            let (to_server, server_in) = mpsc::channel(16);
            let (server_out, from_server) = mpsc::channel(16);
            let done = tokio::spawn(async move { run_viewer(server_out, server_in, viewer, &config).await });
            Client { to_server, from_server, done }
        }

        async fn send(&mut self, message: Message) {
            self.to_server.send(Ok(message)).await.unwrap();
        }

        async fn next(&mut self) -> Message {
            tokio::time::timeout(PATIENCE, self.from_server.next()).await.expect("no frame came").expect("closed")
        }

        async fn next_control(&mut self) -> ServerControl {
            match self.next().await {
                Message::Text(text) => serde_json::from_str(text.as_str()).unwrap(),
                other => panic!("expected a control frame, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn ready_then_output_split_into_frames() {
        let hub = TerminalHub::new("s1", TerminalConfig::default());
        let (terminal, mut pty) = FakePty::new();
        let mut client = Client::start(&hub, ViewerMode::Interactive, Some(terminal)).await;
        assert_eq!(client.next_control().await, ServerControl::status(TerminalStatus::Ready, None));
        pty.print(b"abcdef").await;
        assert_eq!(client.next().await, Message::Binary(Bytes::from_static(b"abcd")));
        assert_eq!(client.next().await, Message::Binary(Bytes::from_static(b"ef")));
    }

    #[tokio::test]
    async fn keystrokes_reach_the_shell_but_not_from_a_read_only_viewer() {
        let hub = TerminalHub::new("s1", TerminalConfig::default());
        let (terminal, mut pty) = FakePty::new();
        let mut typist = Client::start(&hub, ViewerMode::Interactive, Some(terminal)).await;
        let mut watcher = Client::start(&hub, ViewerMode::ReadOnly, None).await;
        typist.next_control().await;
        watcher.next_control().await;

        watcher.send(Message::Binary(Bytes::from_static(b"rm -rf /\r"))).await;
        typist.send(Message::Binary(Bytes::from_static(b"ls\r"))).await;
        assert_eq!(pty.typed(3).await, "ls\r", "only the interactive viewer's keys arrive");
        watcher.send(Message::Text(r#"{"type":"resize","cols":50,"rows":10}"#.into())).await;
        typist.send(Message::Text(r#"{"type":"resize","cols":120,"rows":40}"#.into())).await;
        pty.print(b"ok").await;
        assert_eq!(watcher.next().await, Message::Binary(Bytes::from_static(b"ok")));
        assert_eq!(pty.sizes(), vec![(120, 40)]);
    }

    #[tokio::test]
    async fn a_bad_resize_gets_an_error_frame_and_the_viewer_stays() {
        let hub = TerminalHub::new("s1", TerminalConfig::default());
        let (terminal, mut pty) = FakePty::new();
        let mut client = Client::start(&hub, ViewerMode::Interactive, Some(terminal)).await;
        client.next_control().await;
        for bad in [r#"{"type":"resize","cols":0,"rows":10}"#, r#"{"type":"resize","cols":80,"rows":9999}"#, "{"] {
            client.send(Message::Text(bad.into())).await;
            assert!(matches!(client.next_control().await, ServerControl::Error { .. }), "for {bad}");
        }
        assert!(pty.sizes().is_empty());
        pty.print(b"still here").await;
        assert_eq!(client.next().await, Message::Binary(Bytes::from_static(b"stil")));
    }

    #[tokio::test]
    async fn shell_exit_sends_ended_with_the_reason_and_closes() {
        let hub = TerminalHub::new("s1", TerminalConfig::default());
        let (terminal, pty) = FakePty::new();
        let mut client = Client::start(&hub, ViewerMode::Interactive, Some(terminal)).await;
        client.next_control().await;
        pty.exit("exit status 0");
        assert_eq!(
            client.next_control().await,
            ServerControl::status(TerminalStatus::Ended, Some("exit status 0".into()))
        );
        assert!(matches!(client.next().await, Message::Close(_)));
        assert_eq!(client.done.await.unwrap(), ViewerExit::ShellEnded("exit status 0".into()));
    }

    #[tokio::test]
    async fn keepalive_pings_go_out_and_a_silent_client_is_dropped() {
        let hub = TerminalHub::new("s1", TerminalConfig::default());
        let (terminal, _pty) = FakePty::new();
        let config = TerminalConfig { ping_interval: std::time::Duration::from_millis(20), ..TerminalConfig::default() };
        let mut client = Client::start_with(&hub, ViewerMode::Interactive, Some(terminal), config).await;
        client.next_control().await;
        assert!(matches!(client.next().await, Message::Ping(_)));
        // The client never answers, so after three intervals of silence the server gives up.
        let exit = tokio::time::timeout(PATIENCE, client.done).await.unwrap().unwrap();
        assert_eq!(exit, ViewerExit::ClientSilent);
    }

    #[tokio::test]
    async fn the_loop_ends_when_the_client_leaves() {
        let hub = TerminalHub::new("s1", TerminalConfig::default());
        let (terminal, _pty) = FakePty::new();
        let client = Client::start(&hub, ViewerMode::Interactive, Some(terminal)).await;
        drop(client.to_server);
        let exit = tokio::time::timeout(PATIENCE, client.done).await.unwrap().unwrap();
        assert_eq!(exit, ViewerExit::ClientLeft);
    }
}
