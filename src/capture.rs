//! `--output FILE`: the tree's stdout and stderr, one pipe for both (as `>FILE 2>&1`, so in the order written),
//! read by a thread of pynish's own and written to FILE (see `destination::open_output`), with `--output-limit`
//! keeping only the first and the last half of the limit.
//!
//! The command is never blocked or slowed by the cap: the thread reads the pipe as fast as it fills, writes the
//! first half of the limit to FILE as it comes, and keeps the last half in memory, in a ring of that size (so a
//! limit costs pynish up to half of it in memory), overwriting what falls out of it. Once the tree is gone the
//! thread is told to stop: it reads what the pipe still holds (to its end, or, when a member outside the run
//! still holds the pipe, until it is empty), then the marker line and the ring go to FILE, and FILE is put in
//! place. A write that fails (a full disk) is said once at the end; the thread goes on reading and discarding.

use crate::destination::{self, Output};
use crate::record::Captured;
use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::thread::JoinHandle;

/// How much one read takes from the pipe.
const CHUNK: usize = 1 << 16;
/// The pipe's capacity asked for (best effort; the default is 64 KiB): more room before a burst of output
/// would wait for the reader thread.
const PIPE_SIZE: i32 = 1 << 20;

/// A capture in progress, from before the command starts until `finish`.
pub struct Capture {
    thread: JoinHandle<Sink>,
    /// Closed by `finish`: tells the thread the tree is gone.
    stop: OwnedFd,
    path: String,
    limit: Option<u64>,
}

/// Opens FILE (bad input ends here, before anything runs) and the pipe; starts the reader. Returns the capture
/// and the pipe's write end, for the command's stdout and stderr (close-on-exec: only the command gets it).
pub fn start(path: &Path, limit: Option<u64>) -> Result<(Capture, OwnedFd)> {
    let output = destination::open_output(path)?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot make the output pipe")?;
    // SAFETY: F_SETPIPE_SZ takes a descriptor we own and an integer; a refusal leaves the default size.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&read), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    let (stop_read, stop) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("cannot make a pipe")?;
    let sink = Sink::new(output, limit);
    let thread = std::thread::Builder::new()
        .name("pynish-output".into())
        .spawn(move || pump(File::from(read), stop_read, sink))
        .context("cannot start the output reader")?;
    Ok((Capture { thread, stop, path: path.to_string_lossy().into_owned(), limit }, write))
}

impl Capture {
    /// Once the tree is gone: reads what is left, writes the marker and the last half, puts FILE in place.
    pub fn finish(self) -> Result<Captured> {
        drop(self.stop);
        let sink = self.thread.join().map_err(|_| anyhow::anyhow!("the output reader failed"))?;
        let (written, dropped, error) = sink.close();
        if let Some(error) = error {
            crate::say(format_args!("pynish: cannot write all of the output to {}: {error}", self.path));
        }
        Ok(Captured { file: self.path, bytes_written: written, bytes_dropped: dropped, limit_bytes: self.limit })
    }
}

/// Reads `pipe` into `sink` until its end, or until `stop` closes and then the pipe is empty.
fn pump(mut pipe: File, stop: OwnedFd, mut sink: Sink) -> Sink {
    // pynish's signals are the watch loop's: none of them interrupts this thread (as the timeline's writer).
    let all = nix::sys::signal::SigSet::all();
    let _ = nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&all), None);
    let mut buf = vec![0u8; CHUNK];
    let mut stopping = false;
    loop {
        if !stopping {
            let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN), PollFd::new(stop.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return sink,
            }
            let stop_seen = fds[1].revents().is_some_and(|r| !r.is_empty());
            let pipe_ready = fds[0].revents().is_some_and(|r| !r.is_empty());
            if stop_seen {
                stopping = true;
                // From here on only what the pipe holds now: a writer outside the run must not keep pynish.
                let _ = nix::fcntl::fcntl(&pipe, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
            } else if !pipe_ready {
                continue;
            }
        }
        match pipe.read(&mut buf) {
            Ok(0) => return sink,
            Ok(n) => sink.take(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return sink, // WouldBlock once stopping: the pipe is empty
        }
    }
}

/// Where the bytes go: all of them to FILE, or with a limit the first half to FILE and the last half to a ring.
struct Sink {
    output: Output,
    /// Bytes of the first half still to be written to FILE (everything, without a limit).
    head_left: u64,
    /// The last half's capacity (0 without a limit).
    tail: usize,
    /// The last `tail` bytes seen after the first half, circularly from `start` once full.
    ring: Vec<u8>,
    start: usize,
    /// Bytes of the first half, written or (after a failed write) lost.
    head_seen: u64,
    total: u64,
    written: u64,
    error: Option<io::Error>,
}

impl Sink {
    fn new(output: Output, limit: Option<u64>) -> Sink {
        let (head, tail) = match limit {
            Some(limit) => (limit / 2, usize::try_from(limit - limit / 2).unwrap_or(usize::MAX)),
            None => (u64::MAX, 0),
        };
        Sink {
            output,
            head_left: head,
            tail,
            ring: Vec::new(),
            start: 0,
            head_seen: 0,
            total: 0,
            written: 0,
            error: None,
        }
    }

    fn take(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let head = data.len().min(usize::try_from(self.head_left).unwrap_or(usize::MAX));
        self.write(&data[..head]);
        self.head_left -= head as u64;
        self.head_seen += head as u64;
        self.keep(&data[head..]);
    }

    fn write(&mut self, data: &[u8]) {
        if data.is_empty() || self.error.is_some() {
            return;
        }
        match self.output.file.write_all(data) {
            Ok(()) => self.written += data.len() as u64,
            Err(e) => self.error = Some(e),
        }
    }

    /// Keeps the last `tail` bytes of everything given here.
    fn keep(&mut self, mut data: &[u8]) {
        let t = self.tail;
        if data.is_empty() || t == 0 {
            return;
        }
        if data.len() >= t {
            self.ring.clear();
            self.ring.extend_from_slice(&data[data.len() - t..]);
            self.start = 0;
            return;
        }
        if self.ring.len() < t {
            let n = (t - self.ring.len()).min(data.len());
            self.ring.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        while !data.is_empty() {
            let n = (t - self.start).min(data.len());
            self.ring[self.start..self.start + n].copy_from_slice(&data[..n]);
            self.start = (self.start + n) % t;
            data = &data[n..];
        }
    }

    /// Writes the marker (if anything was dropped) and the last half, then puts FILE in place; returns the bytes
    /// of the tree's output written and dropped (lost to a failed write included), and the first failure.
    fn close(mut self) -> (u64, u64, Option<io::Error>) {
        let ring = std::mem::take(&mut self.ring);
        let middle = self.total - self.head_seen - ring.len() as u64;
        if middle > 0
            && self.error.is_none()
            && let Err(e) = self.output.file.write_all(marker(middle).as_bytes())
        {
            self.error = Some(e);
        }
        let (newer, older) = ring.split_at(self.start);
        self.write(older);
        self.write(newer);
        let error = self.error.take();
        let committed = self.output.commit();
        (self.written, self.total - self.written, error.or(committed.err()))
    }
}

/// The one line that stands where the middle of the output was dropped.
fn marker(dropped: u64) -> String {
    format!("\n[pynish: {dropped} bytes ({}) dropped here]\n", approximate(dropped))
}

/// A size for people: `49.9 MB`, `512 kB`.
fn approximate(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a limit keeps of `input` fed in `chunks`: FILE's bytes and (written, dropped).
    fn kept(limit: u64, input: &[u8], chunk: usize) -> (Vec<u8>, u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut sink = Sink::new(destination::open_output(&path).unwrap(), Some(limit));
        for part in input.chunks(chunk) {
            sink.take(part);
        }
        let (written, dropped, error) = sink.close();
        assert!(error.is_none());
        (std::fs::read(&path).unwrap(), written, dropped)
    }

    #[test]
    fn the_first_and_last_half_stay_around_one_marker_whatever_the_chunks() {
        let input: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
        for chunk in [1, 3, 7, 10, 64, 999, 1000] {
            let (file, written, dropped) = kept(100, &input, chunk);
            let mut want = input[..50].to_vec();
            want.extend_from_slice(marker(900).as_bytes());
            want.extend_from_slice(&input[950..]);
            assert_eq!(String::from_utf8_lossy(&file), String::from_utf8_lossy(&want), "chunk {chunk}");
            assert_eq!((written, dropped), (100, 900), "chunk {chunk}");
        }
        for chunk in [1, 7, 101] {
            let (file, written, dropped) = kept(101, &input[..101], chunk);
            assert_eq!(file, &input[..101], "exactly the limit: whole, no marker (chunk {chunk})");
            assert_eq!((written, dropped), (101, 0));
        }
    }
}
