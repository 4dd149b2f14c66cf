//! One log event, one line: the server's log writer escapes line breaks inside an event.
//!
//! Much of what the server logs comes from outside (API fields, names, what a machine reports).
//! Fields logged with `?` are escaped by their `Debug` form already; this writer is the backstop
//! for everything logged with `%` or inside a message, so a `\n2026-… INFO forged` in a request
//! can never start a line of its own in the log an operator reads.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Wraps a `MakeWriter` (e.g. `std::io::stderr`) so each event stays on one line.
#[derive(Debug, Clone)]
pub struct OneLinePerEvent<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLinePerEvent<M> {
    type Writer = OneLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLine(self.0.make_writer())
    }
}

/// A writer that gets whole events (tracing's fmt layer writes each one with one `write_all`) and
/// writes `\n` and `\r` inside them as the two characters `\n`, `\r`; the final newline stays.
#[derive(Debug)]
pub struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (buf, false),
        };
        if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                _ => line.push(b),
            }
        }
        if newline {
            line.push(b'\n');
        }
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_newline_in_a_field_or_message_cannot_start_a_line() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(OneLinePerEvent(move || sink.clone()))
            .finish();
        let forged = "docker\n2026-12-07T20:00:00.000000Z  INFO forged: all good\r\n";
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(program = %forged, "exec");
            tracing::warn!("message with {forged}");
            tracing::info!("plain");
        });
        let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "{log}");
        assert!(lines.iter().all(|l| !l.starts_with("2026-12-07T20:00:00.000000Z  INFO forged")), "{log}");
        assert!(lines[0].contains(r"docker\n2026-12-07T20:00:00.000000Z  INFO forged: all good\r\n"), "{log}");
        assert!(lines[2].ends_with("plain"));
    }
}
