//! What the host-side processes and a machine's processes say to each other, typed, with the
//! encoding and the parsing next to each other so both ends use the same code.
//!
//! - [`LauncherStatus`]: the launcher's `<session>/status` file, read by the server.
//! - [`InitReport`]: the machine's init to the launcher, one line each on a pipe.
//! - [`DockerHealth`]: init's `/run/docklab/state` and `crashes` files inside the machine. The
//!   machine's root may write anything there, so parsing them is tolerant (unknown text is
//!   `None`, never an error), reads only a capped prefix, and keeps printable text only: what
//!   comes out goes to the server's log and the learner's terminal.
//! - [`Frame`]: the terminal relay's wire format, `[kind: u8][len: u32 big-endian][payload]`.

use std::fmt;
use std::io::Write;
use std::path::Path;

use crate::error::SandboxError;

/// Most characters of free text (a reason, a crash's cause) kept from one message.
pub const TEXT_CAP: usize = 300;
/// Most bytes of one control file or status file that are looked at.
pub const FILE_CAP: usize = 4096;

/// `bytes` as one line of printable text: control characters (newlines and escapes included)
/// become spaces, and at most [`TEXT_CAP`] characters are kept.
pub fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(FILE_CAP)]);
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(TEXT_CAP).collect()
}

/// The launcher's progress, as the server reads it from `<session>/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LauncherStatus {
    /// Written by the server before it runs the launcher.
    Starting,
    /// Init reported Docker answering.
    Ready,
    /// The launcher could not start the machine.
    Failed(String),
    /// The machine's init ended (the sentence says how).
    Stopped(String),
}

impl LauncherStatus {
    pub fn encode(&self) -> String {
        match self {
            LauncherStatus::Starting => "starting\n".into(),
            LauncherStatus::Ready => "ready\n".into(),
            LauncherStatus::Failed(why) => format!("failed: {}\n", printable(why.as_bytes())),
            LauncherStatus::Stopped(why) => format!("stopped: {}\n", printable(why.as_bytes())),
        }
    }

    /// `None` for anything that is not a status (an empty file, one being written, junk).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > FILE_CAP {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?.trim();
        match text {
            "starting" => Some(LauncherStatus::Starting),
            "ready" => Some(LauncherStatus::Ready),
            _ => {
                if let Some(why) = text.strip_prefix("failed: ") {
                    Some(LauncherStatus::Failed(printable(why.as_bytes())))
                } else {
                    text.strip_prefix("stopped: ").map(|why| LauncherStatus::Stopped(printable(why.as_bytes())))
                }
            }
        }
    }

    /// Replaces the status file at `path` in one step (readers never see half of it).
    pub fn write(&self, path: &Path) -> Result<(), SandboxError> {
        crate::spec::write_atomic(path, self.encode().as_bytes())
    }

    /// The status in the file at `path`; `None` when it is missing or holds no status.
    pub fn read(path: &Path) -> Option<Self> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::open(path).ok()?.take(FILE_CAP as u64 + 1).read_to_end(&mut bytes).ok()?;
        Self::parse(&bytes)
    }
}

/// What the machine's init tells the launcher, one line each, until it closes the pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitReport {
    /// Docker answers: the machine is ready.
    Ready,
    /// Init failed and is exiting.
    Error(String),
    /// A step done, for the launcher's log.
    Progress(String),
}

impl InitReport {
    pub fn send(&self, out: &mut impl Write) -> std::io::Result<()> {
        let line = match self {
            InitReport::Ready => "ready\n".to_string(),
            InitReport::Error(why) => format!("error: {}\n", printable(why.as_bytes())),
            InitReport::Progress(what) => format!("{}\n", printable(what.as_bytes())),
        };
        out.write_all(line.as_bytes())
    }

    /// One line of the pipe (without its newline); `None` for an empty line.
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim_end();
        if line.is_empty() {
            return None;
        }
        Some(match line {
            "ready" => InitReport::Ready,
            _ => match line.strip_prefix("error: ") {
                Some(why) => InitReport::Error(printable(why.as_bytes())),
                None => InitReport::Progress(printable(line.as_bytes())),
            },
        })
    }
}

/// The machine's Docker engine, as its init last wrote in `/run/docklab/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    Ready,
    /// dockerd ended; init restarts it after a pause. The sentence says how it ended.
    Crashed(String),
    Restarting,
    /// The machine is shutting down.
    Stopping,
}

impl EngineState {
    pub fn encode(&self) -> String {
        match self {
            EngineState::Ready => "ready\n".into(),
            EngineState::Crashed(why) => format!("docker-crashed: {}\n", printable(why.as_bytes())),
            EngineState::Restarting => "docker-restarting\n".into(),
            EngineState::Stopping => "stopping\n".into(),
        }
    }

    /// `None` for anything else (the machine's root may have written anything).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > FILE_CAP {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?.trim();
        match text {
            "ready" => Some(EngineState::Ready),
            "docker-restarting" => Some(EngineState::Restarting),
            "stopping" => Some(EngineState::Stopping),
            _ => text.strip_prefix("docker-crashed: ").map(|why| EngineState::Crashed(printable(why.as_bytes()))),
        }
    }
}

impl fmt::Display for EngineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode().trim_end())
    }
}

/// How often dockerd crashed in this machine, and how it ended last (`/run/docklab/crashes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crashes {
    pub count: u64,
    pub last: String,
}

impl Crashes {
    pub fn encode(&self) -> String {
        format!("{} {}\n", self.count, printable(self.last.as_bytes()))
    }

    /// `<count> <last>`; `None` unless it starts with a plain decimal count.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > FILE_CAP {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?.trim();
        let (count, last) = text.split_once(' ').unwrap_or((text, ""));
        if count.is_empty() || count.len() > 20 || !count.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Crashes { count: count.parse().ok()?, last: printable(last.trim().as_bytes()) })
    }
}

/// The machine's Docker engine as the host sees it: its state and its crash record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHealth {
    pub state: EngineState,
    pub crashes: Crashes,
}

impl DockerHealth {
    /// From the bytes of the `state` file and, if it could be read, the `crashes` file. `None`
    /// when the state is not one init writes; a missing or unreadable crash record counts as
    /// no crash. Each file is parsed on its own: nothing in one can stand for the other.
    pub fn parse(state: &[u8], crashes: Option<&[u8]>) -> Option<Self> {
        let state = EngineState::parse(state)?;
        let crashes = crashes.and_then(Crashes::parse).unwrap_or_default();
        Some(DockerHealth { state, crashes })
    }

    /// How dockerd ended, when it crashed since `before`.
    pub fn crashed_since(&self, before: &DockerHealth) -> Option<&str> {
        (self.crashes.count > before.crashes.count).then_some(self.crashes.last.as_str())
    }

    /// Whether Docker is back since `before` (it was not ready then, or crashed in between).
    pub fn recovered_since(&self, before: &DockerHealth) -> bool {
        self.state == EngineState::Ready && (before.state != EngineState::Ready || self.crashes.count > before.crashes.count)
    }
}

impl fmt::Display for DockerHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} crashes", self.state, self.crashes.count)?;
        if !self.crashes.last.is_empty() {
            write!(f, ", last: {}", self.crashes.last)?;
        }
        f.write_str(")")
    }
}

/// Largest frame payload either end accepts.
pub const MAX_FRAME: usize = 1 << 20;

const DATA: u8 = 0;
const RESIZE: u8 = 1;
const EXIT: u8 = 2;

/// One message on a terminal relay's socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Terminal bytes: keystrokes to the relay, output from it.
    Data(Vec<u8>),
    /// Client → relay: the terminal's new size.
    Resize { cols: u16, rows: u16 },
    /// Relay → client: the shell ended; a human sentence.
    Exit(String),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (kind, payload): (u8, std::borrow::Cow<[u8]>) = match self {
            Frame::Data(bytes) => (DATA, bytes.as_slice().into()),
            Frame::Resize { cols, rows } => {
                let mut p = cols.to_be_bytes().to_vec();
                p.extend_from_slice(&rows.to_be_bytes());
                (RESIZE, p.into())
            }
            Frame::Exit(why) => (EXIT, why.as_bytes().into()),
        };
        out.reserve(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
    }
}

/// Why a relay's byte stream is not frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge { len: usize },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("resize frame of {len} bytes (want 4)")]
    BadResize { len: usize },
}

/// Cuts a byte stream into [`Frame`]s, across reads of any size.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// Adds `bytes` and returns every frame now complete. After an error the stream is
    /// unusable: drop the connection (or [`FrameDecoder::clear`] for a new one).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut pos = 0;
        let result = loop {
            let rest = &self.buf[pos..];
            if rest.len() < 5 {
                break Ok(());
            }
            let kind = rest[0];
            let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if len > MAX_FRAME {
                break Err(FrameError::TooLarge { len });
            }
            if !matches!(kind, DATA | RESIZE | EXIT) {
                break Err(FrameError::UnknownKind { kind });
            }
            if rest.len() - 5 < len {
                break Ok(());
            }
            let payload = &rest[5..5 + len];
            out.push(match kind {
                DATA => Frame::Data(payload.to_vec()),
                RESIZE if len == 4 => Frame::Resize { cols: u16::from_be_bytes([payload[0], payload[1]]), rows: u16::from_be_bytes([payload[2], payload[3]]) },
                RESIZE => break Err(FrameError::BadResize { len }),
                _ => Frame::Exit(String::from_utf8_lossy(payload).into_owned()),
            });
            pos += 5 + len;
        };
        match result {
            Ok(()) => {
                self.buf.drain(..pos);
                Ok(out)
            }
            Err(e) => {
                self.buf.clear();
                Err(e)
            }
        }
    }

    /// Forgets a partial frame (a new connection starts).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_status_round_trips() {
        for s in [LauncherStatus::Starting, LauncherStatus::Ready, LauncherStatus::Failed("no disk".into()), LauncherStatus::Stopped("init exited with code 1".into())] {
            assert_eq!(LauncherStatus::parse(s.encode().as_bytes()), Some(s));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status");
        assert_eq!(LauncherStatus::read(&p), None, "a missing file holds no status");
        LauncherStatus::Failed("mount failed:\nEPERM".into()).write(&p).unwrap();
        assert_eq!(LauncherStatus::read(&p), Some(LauncherStatus::Failed("mount failed: EPERM".into())), "one line");
    }

    #[test]
    fn launcher_status_refuses_unknown_and_oversized() {
        for bad in [&b""[..], b"Ready", b"readyx", b"failed:", b"\xff\xfe", b"starting now"] {
            assert_eq!(LauncherStatus::parse(bad), None, "{bad:?}");
        }
        let mut big = b"failed: ".to_vec();
        big.extend(vec![b'x'; FILE_CAP]);
        assert_eq!(LauncherStatus::parse(&big), None);
        let long = LauncherStatus::parse(format!("failed: {}", "y".repeat(FILE_CAP - 10)).as_bytes()).unwrap();
        assert_eq!(long, LauncherStatus::Failed("y".repeat(TEXT_CAP)), "free text is capped");
    }

    #[test]
    fn init_reports_round_trip_one_line_each() {
        let mut wire = Vec::new();
        let reports = [InitReport::Progress("dockerd started".into()), InitReport::Error("mounting /proc: EPERM".into()), InitReport::Ready];
        for r in &reports {
            r.send(&mut wire).unwrap();
        }
        let parsed: Vec<_> = String::from_utf8(wire).unwrap().lines().filter_map(InitReport::parse).collect();
        assert_eq!(parsed, reports);
        let mut wire = Vec::new();
        InitReport::Error("two\nlines\x1b[2J".into()).send(&mut wire).unwrap();
        assert_eq!(wire, b"error: two lines [2J\n");
        assert_eq!(InitReport::parse(""), None);
    }

    #[test]
    fn engine_state_and_crashes_round_trip() {
        for s in [EngineState::Ready, EngineState::Crashed("dockerd was killed by SIGKILL".into()), EngineState::Restarting, EngineState::Stopping] {
            assert_eq!(EngineState::parse(s.encode().as_bytes()), Some(s));
        }
        let c = Crashes { count: 3, last: "dockerd exited with code 1".into() };
        assert_eq!(Crashes::parse(c.encode().as_bytes()), Some(c));
        assert_eq!(Crashes::parse(b"0"), Some(Crashes::default()));
    }

    #[test]
    fn unknown_and_oversized_health_is_refused() {
        for bad in [&b""[..], b"READY", b"ready | 7 forged", b"docker-crashed", b"\0\0\0", b"\xffready"] {
            assert_eq!(EngineState::parse(bad), None, "{bad:?}");
        }
        assert_eq!(EngineState::parse(&vec![b' '; FILE_CAP + 1]), None);
        for bad in [&b""[..], b"x 1", b"-1 why", b"+7 why", b"99999999999999999999999 overflow", b"7\x00 why"] {
            assert_eq!(Crashes::parse(bad), None, "{bad:?}");
        }
        // Unreadable or unknown crash records count as none; an unknown state is no reading.
        assert_eq!(DockerHealth::parse(b"ready\n", Some(b"junk")).unwrap().crashes, Crashes::default());
        assert_eq!(DockerHealth::parse(b"ready\n", None).unwrap().crashes.count, 0);
        assert_eq!(DockerHealth::parse(&[0u8; FILE_CAP], Some(b"5 x")), None);
    }

    #[test]
    fn a_hostile_state_file_cannot_forge_a_crash_or_inject_control_characters() {
        let before = DockerHealth::parse(b"ready\n", Some(b"1 dockerd exited with code 2\n")).unwrap();
        // The old "STATE | CRASHES" string split at the first " | ": a state file saying this
        // announced 99 crashes with the machine's own text as the reason.
        assert_eq!(DockerHealth::parse(b"ready | 99 forged\n", Some(b"1 dockerd exited with code 2\n")), None);
        let crashed = DockerHealth::parse(b"docker-crashed: x | 99 forged\x1b[2J\r\x07\n", Some(b"1 dockerd exited with code 2\n")).unwrap();
        assert_eq!(crashed.crashes.count, 1);
        assert_eq!(crashed.crashed_since(&before), None);
        assert!(!crashed.recovered_since(&before));
        // What the machine writes reaches the log and the terminal printable only, and capped.
        let noisy = DockerHealth::parse(b"docker-crashed: a\x1b]0;title\x07b\n", Some(format!("2 {}\x1b[31m\r\n", "z".repeat(1000)).as_bytes())).unwrap();
        let text = format!("{noisy} {}", noisy.crashed_since(&before).unwrap());
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert_eq!(noisy.crashes.last.chars().count(), TEXT_CAP);
    }

    #[test]
    fn crashes_and_recoveries_are_seen_against_the_last_reading() {
        let ready = |n: u64| DockerHealth { state: EngineState::Ready, crashes: Crashes { count: n, last: "dockerd was killed by SIGKILL".into() } };
        let down = DockerHealth { state: EngineState::Crashed("dockerd was killed by SIGKILL".into()), crashes: Crashes { count: 1, last: "dockerd was killed by SIGKILL".into() } };
        assert_eq!(down.crashed_since(&ready(0)), Some("dockerd was killed by SIGKILL"));
        assert!(ready(1).recovered_since(&down));
        // A crash and restart between two readings: both at once.
        assert!(ready(1).crashed_since(&ready(0)).is_some() && ready(1).recovered_since(&ready(0)));
        assert!(ready(1).crashed_since(&ready(1)).is_none() && !ready(1).recovered_since(&ready(1)));
    }

    #[test]
    fn frames_round_trip_and_split_across_reads() {
        let frames = vec![Frame::Data(b"hello".to_vec()), Frame::Resize { cols: 80, rows: 24 }, Frame::Exit("the shell exited".into()), Frame::Data(vec![])];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        for cut in 0..wire.len() {
            let mut d = FrameDecoder::default();
            let mut got = d.feed(&wire[..cut]).unwrap();
            got.extend(d.feed(&wire[cut..]).unwrap());
            assert_eq!(got, frames, "cut at {cut}");
        }
    }

    #[test]
    fn unknown_malformed_and_oversized_frames_are_refused() {
        let mut d = FrameDecoder::default();
        assert_eq!(d.feed(&[7, 0, 0, 0, 0]), Err(FrameError::UnknownKind { kind: 7 }));
        let mut big = vec![DATA];
        big.extend_from_slice(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert_eq!(FrameDecoder::default().feed(&big), Err(FrameError::TooLarge { len: MAX_FRAME + 1 }));
        assert_eq!(FrameDecoder::default().feed(&[RESIZE, 0, 0, 0, 2, 0, 80]), Err(FrameError::BadResize { len: 2 }));
        // A refused stream leaves nothing behind for the next connection.
        assert_eq!(d.feed(&Frame::Data(b"x".to_vec()).encode()), Ok(vec![Frame::Data(b"x".to_vec())]));
    }
}
