//! An incremental `text/event-stream` parser (HTML Living Standard,
//! "Parsing an event stream"): bytes in, complete events out. Written by
//! hand because the crates that do this are tied to one HTTP client's
//! stream types; this one is fed `reqwest::Response::chunk()` directly.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `message` when the stream named none.
    pub event: String,
    pub data: String,
    /// The stream's last event id after this event.
    pub id: Option<String>,
}

/// Parser state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// A `\r` ended the last chunk: a `\n` starting the next one belongs to it.
    after_cr: bool,
    data: String,
    has_data: bool,
    event: String,
    last_id: Option<String>,
    max: usize,
}

/// An event grew past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl Parser {
    /// A parser refusing events (or lines) larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Vec<Event>, TooLarge> {
        let mut out = Vec::new();
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&bytes[..pos]);
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut out)?;
            let crlf = bytes[pos] == b'\r';
            bytes = &bytes[pos + 1..];
            if crlf {
                if bytes.first() == Some(&b'\n') {
                    bytes = &bytes[1..];
                } else if bytes.is_empty() {
                    self.after_cr = true;
                }
            }
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() + self.data.len() > self.max {
            return Err(TooLarge);
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        if line.is_empty() {
            if self.has_data {
                out.push(Event {
                    event: if self.event.is_empty() {
                        "message".into()
                    } else {
                        std::mem::take(&mut self.event)
                    },
                    data: std::mem::take(&mut self.data),
                    id: self.last_id.clone(),
                });
            }
            self.data.clear();
            self.event.clear();
            self.has_data = false;
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                if self.data.len() > self.max {
                    return Err(TooLarge);
                }
            }
            "event" => self.event = value.to_owned(),
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let mut p = Parser::new(1 << 20);
        assert!(p.push(b"id: 7\r").unwrap().is_empty());
        assert!(p.push(b"\ndata: {\"a\":").unwrap().is_empty());
        let ev = p
            .push(b"1}\n\n: comment\nevent: endpoint\ndata: /msg\r\n\r\n")
            .unwrap();
        assert_eq!(
            ev,
            vec![
                Event {
                    event: "message".into(),
                    data: "{\"a\":1}".into(),
                    id: Some("7".into())
                },
                Event {
                    event: "endpoint".into(),
                    data: "/msg".into(),
                    id: Some("7".into())
                }
            ]
        );
        assert_eq!(p.last_event_id(), Some("7"));
    }

    #[test]
    fn multi_line_data_and_priming_event() {
        let mut p = Parser::new(1 << 20);
        // An id-only event (a priming event) dispatches nothing.
        assert!(p.push(b"id: 0\n\n").unwrap().is_empty());
        assert_eq!(p.last_event_id(), Some("0"));
        let ev = p.push(b"data: a\ndata:b\n\n").unwrap();
        assert_eq!(ev[0].data, "a\nb");
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut p = Parser::new(16);
        assert_eq!(p.push(b"data: 0123456789abcdefgh"), Err(TooLarge));
    }
}
