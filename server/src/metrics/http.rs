//! `--metrics-addr`: GET /metrics served from the parent's poll loop, without threads. The
//! listener and every scrape connection are non-blocking and polled beside the echo listener; at
//! most [`MAX_SCRAPES`] scrapes are open at once (while that many are, the metrics listener is not
//! polled and further scrapers wait in its backlog), and each gets [`SCRAPE_DEADLINE`] to send
//! its request and take the answer, after which it is closed. So a slow or stuck scraper costs
//! one slot for a few seconds and never blocks the accept of an echo client.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

/// Most scrape connections open at once.
pub const MAX_SCRAPES: usize = 4;
/// How long a scrape connection may take, request and answer together.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);
/// The longest request head read; a longer one is answered 431 and closed.
const MAX_REQUEST: usize = 8192;

struct Scrape {
    stream: TcpStream,
    request: Vec<u8>,
    /// The answer, once the request is in, and how much of it is written.
    response: Option<(Vec<u8>, usize)>,
    deadline: Instant,
}

/// What a request asked for.
enum Asked {
    Metrics,
    NotFound,
    NotGet,
    TooLong,
}

pub struct Endpoint {
    listener: TcpListener,
    scrapes: Vec<Scrape>,
}

impl Endpoint {
    pub fn bind(addr: SocketAddr) -> io::Result<Endpoint> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Endpoint {
            listener,
            scrapes: Vec::with_capacity(MAX_SCRAPES),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The fds to poll, in the order [`Endpoint::service`] expects their readiness: the listener
    /// (only while a slot is free), then each scrape (readable while its request is coming,
    /// writable while its answer goes out). Returns how many it wrote into `out`.
    pub fn poll_fds<'a>(&'a self, out: &mut [PollFd<'a>]) -> usize {
        let mut n = 0;
        if self.scrapes.len() < MAX_SCRAPES {
            out[n] = PollFd::new(self.listener.as_fd(), PollFlags::POLLIN);
            n += 1;
        }
        for s in &self.scrapes {
            let events = match s.response {
                None => PollFlags::POLLIN,
                Some(_) => PollFlags::POLLOUT,
            };
            out[n] = PollFd::new(s.stream.as_fd(), events);
            n += 1;
        }
        n
    }

    /// The earliest scrape deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.scrapes.iter().map(|s| s.deadline).min()
    }

    /// Accepts, reads, answers and closes, as far as the sockets allow without blocking. `ready`
    /// is the readiness of the fds [`Endpoint::poll_fds`] returned last, in its order; `render`
    /// makes the exposition.
    pub fn service(&mut self, ready: &[bool], now: Instant, render: &dyn Fn() -> String) {
        let listener_polled = self.scrapes.len() < MAX_SCRAPES;
        let (listener_ready, scrapes_ready) = match listener_polled {
            true => (
                ready.first().copied().unwrap_or(false),
                ready.get(1..).unwrap_or(&[]),
            ),
            false => (false, ready),
        };
        let mut keep = Vec::with_capacity(MAX_SCRAPES);
        for (i, mut s) in std::mem::take(&mut self.scrapes).into_iter().enumerate() {
            let alive = match scrapes_ready.get(i).copied().unwrap_or(false) {
                true => s.advance(render),
                false => true,
            };
            if alive && now < s.deadline {
                keep.push(s);
            }
        }
        self.scrapes = keep;
        if listener_ready {
            self.accept(now);
        }
    }

    fn accept(&mut self, now: Instant) {
        while self.scrapes.len() < MAX_SCRAPES {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.scrapes.push(Scrape {
                        stream,
                        request: Vec::new(),
                        response: None,
                        deadline: now + SCRAPE_DEADLINE,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock, or an error of that one connection: try again at the next poll.
                Err(_) => break,
            }
        }
    }
}

impl Scrape {
    /// Reads or writes what it can; `false` once the connection is done (answered or failed).
    fn advance(&mut self, render: &dyn Fn() -> String) -> bool {
        if self.response.is_none() {
            let mut buf = [0u8; 2048];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(n) => self.request.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
                if let Some(asked) = parse(&self.request) {
                    self.response = Some((answer(asked, render), 0));
                    break;
                }
            }
        }
        let Some((bytes, written)) = self.response.as_mut() else {
            return true;
        };
        while *written < bytes.len() {
            match self.stream.write(&bytes[*written..]) {
                Ok(0) => return false,
                Ok(n) => *written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        false
    }
}

/// What a complete request head asks for; `None` while it is incomplete.
fn parse(request: &[u8]) -> Option<Asked> {
    let end = request.windows(4).position(|w| w == b"\r\n\r\n");
    let Some(end) = end else {
        return (request.len() > MAX_REQUEST).then_some(Asked::TooLong);
    };
    let head = String::from_utf8_lossy(&request[..end]);
    let mut words = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    Some(match (method, target.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => Asked::Metrics,
        ("GET", _) => Asked::NotFound,
        _ => Asked::NotGet,
    })
}

fn answer(asked: Asked, render: &dyn Fn() -> String) -> Vec<u8> {
    let (status, content_type, body) = match asked {
        Asked::Metrics => ("200 OK", super::text::CONTENT_TYPE, render()),
        Asked::NotFound => ("404 Not Found", "text/plain", "try /metrics\n".into()),
        Asked::NotGet => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
        Asked::TooLong => (
            "431 Request Header Fields Too Large",
            "text/plain",
            String::new(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_recognised_once_their_head_is_complete() {
        assert!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").is_none());
        assert!(matches!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Asked::Metrics)
        ));
        assert!(matches!(
            parse(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(Asked::Metrics)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n"),
            Some(Asked::NotFound)
        ));
        assert!(matches!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Asked::NotGet)
        ));
        assert!(matches!(
            parse(&[b'a'; MAX_REQUEST + 1]),
            Some(Asked::TooLong)
        ));
    }
}
