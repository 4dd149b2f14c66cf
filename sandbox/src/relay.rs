//! The terminal relay: the learner's shell outlives the server.
//!
//! `docklab __enter <dir> --relay <socket> -- bash --login` holds the PTY master of the shell and
//! serves it on a unix socket in the session's state directory. The server connects to that
//! socket; when the server restarts, it connects again and the learner finds the same shell, with
//! the last 64 KiB of output replayed. One client at a time: a new connection replaces the old.
//!
//! Wire format, both directions: [`crate::protocol::Frame`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::protocol::{Frame, FrameDecoder};

/// Output kept for a client that (re)connects.
const REPLAY_BYTES: usize = 64 * 1024;
/// Output queued for a slow client before the relay stops reading the shell (back-pressure).
const OUT_QUEUE_MAX: usize = 256 * 1024;
/// Keystrokes queued for the shell before the relay stops reading the client.
const IN_QUEUE_MAX: usize = 64 * 1024;

struct Ring {
    buf: VecDeque<u8>,
}

impl Ring {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        let over = self.buf.len().saturating_sub(REPLAY_BYTES);
        self.buf.drain(..over);
    }
}

fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).map(|_| ()).map_err(io::Error::from)
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, 0) => "the shell exited".into(),
        WaitStatus::Exited(_, c) => format!("the shell exited with code {c}"),
        WaitStatus::Signaled(_, s, _) => format!("the shell was killed by {s}"),
        _ => "the shell ended".into(),
    }
}

/// Runs the relay until the shell (`child`) exits. `master` is the PTY master.
pub fn serve(listener: UnixListener, master: OwnedFd, child: Pid) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    set_nonblocking(&master)?;
    let mut master = std::fs::File::from(master);
    let mut client: Option<UnixStream> = None;
    let mut ring = Ring { buf: VecDeque::new() };
    let mut out_q: Vec<u8> = Vec::new();
    let mut in_q: Vec<u8> = Vec::new();
    let mut decoder = FrameDecoder::default();
    let mut shell_gone: Option<String> = None;
    let mut buf = vec![0u8; 16 * 1024];

    loop {
        if shell_gone.is_none() {
            if let Ok(st @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) = waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                shell_gone = Some(describe(st));
            }
        }
        if let Some(reason) = &shell_gone {
            // Drain what the shell printed last, tell the client, and leave.
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                Frame::Data(buf[..n].to_vec()).encode_into(&mut out_q);
            }
            if let Some(c) = client.as_mut() {
                Frame::Exit(reason.clone()).encode_into(&mut out_q);
                let _ = c.set_nonblocking(false);
                let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = c.write_all(&out_q);
            }
            return Ok(());
        }

        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let mut master_events = PollFlags::empty();
        if out_q.len() < OUT_QUEUE_MAX {
            master_events |= PollFlags::POLLIN;
        }
        if !in_q.is_empty() {
            master_events |= PollFlags::POLLOUT;
        }
        fds.push(PollFd::new(master.as_fd(), master_events));
        if let Some(c) = &client {
            let mut ev = PollFlags::empty();
            if in_q.len() < IN_QUEUE_MAX {
                ev |= PollFlags::POLLIN;
            }
            if !out_q.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.as_fd(), ev));
        }
        match nix::poll::poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let rev = |i: usize| fds.get(i).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
        let (l_ev, m_ev, c_ev) = (rev(0), rev(1), rev(2));
        drop(fds);

        if l_ev.contains(PollFlags::POLLIN) {
            if let Ok((c, _)) = listener.accept() {
                c.set_nonblocking(true)?;
                // A new viewer replaces the old one and first gets what the shell printed lately.
                out_q.clear();
                decoder.clear();
                Frame::Data(ring.buf.iter().copied().collect()).encode_into(&mut out_q);
                client = Some(c);
            }
        }
        if m_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            match master.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    ring.push(&buf[..n]);
                    if client.is_some() {
                        Frame::Data(buf[..n].to_vec()).encode_into(&mut out_q);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EIO: the slave side is closed; the shell is ending. waitpid above will see it.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if m_ev.contains(PollFlags::POLLOUT) && !in_q.is_empty() {
            match master.write(&in_q) {
                Ok(n) => {
                    in_q.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => in_q.clear(),
            }
        }
        let mut drop_client = false;
        if let Some(c) = client.as_mut() {
            if c_ev.contains(PollFlags::POLLIN) || c_ev.contains(PollFlags::POLLHUP) {
                match c.read(&mut buf) {
                    Ok(0) => drop_client = true,
                    Ok(n) => match decoder.feed(&buf[..n]) {
                        Ok(frames) => {
                            for frame in frames {
                                match frame {
                                    Frame::Data(bytes) => in_q.extend_from_slice(&bytes),
                                    Frame::Resize { cols, rows } => {
                                        let _ = crate::pty::resize_fd(master.as_raw_fd(), cols, rows);
                                    }
                                    // Only the relay ends a shell.
                                    Frame::Exit(_) => {}
                                }
                            }
                        }
                        Err(_) => drop_client = true,
                    },
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => drop_client = true,
                }
            }
            if !drop_client && c_ev.contains(PollFlags::POLLOUT) && !out_q.is_empty() {
                match c.write(&out_q) {
                    Ok(n) => {
                        out_q.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => drop_client = true,
                }
            }
            if c_ev.contains(PollFlags::POLLERR) {
                drop_client = true;
            }
        }
        if drop_client {
            client = None;
            out_q.clear();
            decoder.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_ring_keeps_the_latest_bytes() {
        let mut r = Ring { buf: VecDeque::new() };
        r.push(&vec![b'a'; REPLAY_BYTES]);
        r.push(b"tail");
        assert_eq!(r.buf.len(), REPLAY_BYTES);
        let v: Vec<u8> = r.buf.iter().copied().collect();
        assert!(v.ends_with(b"tail"));
    }
}
