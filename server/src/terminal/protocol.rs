//! The terminal WebSocket's JSON control messages (text frames). Binary frames are raw bytes.

use serde::{Deserialize, Serialize};

/// Largest accepted terminal width, in columns.
pub const MAX_COLS: u32 = 1000;
/// Largest accepted terminal height, in rows.
pub const MAX_ROWS: u32 = 500;

/// What a client may send in a text frame.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ClientControl {
    Resize { cols: u32, rows: u32 },
}

/// What the server sends in a text frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerControl {
    Status {
        state: TerminalStatus,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        reason: Option<String>,
    },
    Error { message: String },
    /// Every task's grade, sent whenever one changes (and to a viewer as it attaches).
    Checks { tasks: Vec<crate::grading::TaskReport> },
    /// The ports containers publish in the machine, whenever they change (and on attach); each
    /// is reachable through the port preview at `/sessions/{id}/ports/{port}/`.
    Ports { ports: Vec<PublishedPort> },
    /// What the session's engine holds (images, volumes, networks, containers, who reaches whom),
    /// whenever it changes, for sessions whose lesson shows a live visual.
    Scene { scene: crate::visuals::Scene },
}

/// One published port of a container in the learner's machine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    /// The port on the machine (`-p 8080:80` → 8080).
    pub port: u16,
    /// The container's port behind it (80).
    pub target: u16,
    pub container: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalStatus {
    /// The viewer is attached to a running shell.
    Ready,
    /// The server is starting a shell: the first viewer's, or a fresh one after the last ended.
    Reconnecting,
    /// The shell is gone; `reason` says why. Reconnecting starts a fresh one.
    Ended,
}

impl ServerControl {
    pub fn status(state: TerminalStatus, reason: Option<String>) -> Self {
        ServerControl::Status { state, reason }
    }

    pub fn error(message: impl Into<String>) -> Self {
        ServerControl::Error { message: message.into() }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("control messages always serialise")
    }
}

/// Checks a terminal size against the accepted bounds.
pub fn validate_size(cols: u32, rows: u32) -> Result<(u16, u16), String> {
    if !(1..=MAX_COLS).contains(&cols) || !(1..=MAX_ROWS).contains(&rows) {
        return Err(format!(
            "terminal size {cols}x{rows} is out of range: cols must be 1 to {MAX_COLS}, rows 1 to {MAX_ROWS}"
        ));
    }
    // Both bounds fit in u16.
    Ok((cols as u16, rows as u16))
}

/// Parses a client text frame into a control message with a valid size.
pub fn parse_client(text: &str) -> Result<ClientControl, String> {
    let msg: ClientControl =
        serde_json::from_str(text).map_err(|e| format!("not a control message this server understands: {e}"))?;
    match msg {
        ClientControl::Resize { cols, rows } => validate_size(cols, rows).map(|_| msg),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_is_parsed_and_validated() {
        assert_eq!(
            parse_client(r#"{"type":"resize","cols":120,"rows":40}"#),
            Ok(ClientControl::Resize { cols: 120, rows: 40 })
        );
        assert!(parse_client(r#"{"type":"resize","cols":0,"rows":40}"#).is_err());
        assert!(parse_client(r#"{"type":"resize","cols":80,"rows":501}"#).is_err());
        assert!(parse_client(r#"{"type":"resize","cols":-1,"rows":4}"#).is_err());
        assert!(parse_client(r#"{"type":"dance"}"#).is_err());
        assert!(parse_client("not json").is_err());
    }

    #[test]
    fn status_serialises_like_the_api_says() {
        let ready = ServerControl::status(TerminalStatus::Ready, None).to_json();
        assert_eq!(ready, r#"{"type":"status","state":"ready"}"#);
        let ended = ServerControl::status(TerminalStatus::Ended, Some("bye".into())).to_json();
        assert_eq!(ended, r#"{"type":"status","state":"ended","reason":"bye"}"#);
    }
}
