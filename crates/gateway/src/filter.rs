//! Filtering `tools/list`, `prompts/list` and `resources/list` results to
//! what the caller may use.
//!
//! Applied to the upstream's answer to a list request, whether it came as
//! one JSON object or inside an SSE stream. Any result that was
//! filtered is marked `cacheScope: "private"` (2026-07-28 caching: a
//! per-caller list must not be shared between authorization contexts).

use mcpgate_core::jsonrpc::Id;
use serde_json::Value;

/// Which list a filtered response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl ListKind {
    /// The list a method answers, if it is one of the filtered lists.
    pub fn of_method(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(ListKind::Tools),
            "prompts/list" => Some(ListKind::Prompts),
            "resources/list" => Some(ListKind::Resources),
            _ => None,
        }
    }

    /// The method that asks for this list.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
        }
    }

    /// (result member holding the list, member naming an item).
    fn members(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Tools => ("tools", "name"),
            ListKind::Prompts => ("prompts", "name"),
            ListKind::Resources => ("resources", "uri"),
        }
    }
}

/// A list answer to filter: the request id, the list, and the keep
/// predicate (called with an item's name, or a resource's URI).
pub struct ListFilter {
    pub id: Id,
    pub kind: ListKind,
    pub keep: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for ListFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListFilter")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Rewrites one JSON-RPC response in place if it answers `id` with a list
/// of `kind`; `keep` decides per item. Returns whether anything changed.
pub fn filter_list_response(
    msg: &mut Value,
    id: &Id,
    kind: ListKind,
    keep: &dyn Fn(&str) -> bool,
) -> bool {
    if msg.get("id") != Some(&id.to_value()) {
        return false;
    }
    let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut) else {
        return false;
    };
    let (list, key) = kind.members();
    let Some(items) = result.get_mut(list).and_then(Value::as_array_mut) else {
        return false;
    };
    let before = items.len();
    items.retain(|t| t.get(key).and_then(Value::as_str).is_some_and(keep));
    let changed = items.len() != before;
    if result.contains_key("cacheScope") {
        result.insert("cacheScope".into(), Value::from("private"));
    }
    changed
}

/// Rewrites a JSON body; returns the new bytes, or `None` to keep the
/// original (not JSON, or not the answer).
pub fn filter_json_body(
    bytes: &[u8],
    id: &Id,
    kind: ListKind,
    keep: &dyn Fn(&str) -> bool,
) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(bytes).ok()?;
    filter_list_response(&mut v, id, kind, keep);
    serde_json::to_vec(&v).ok()
}

/// An incremental SSE rewriter: feeds bytes, yields bytes. Events are
/// passed through unchanged except a `data:` event that is the response to
/// `id`, whose JSON is filtered. Written by hand because it must preserve
/// every other field (`id:`, `retry:`, comments) byte for byte, which the
/// SSE parsing crates do not promise.
#[derive(Debug)]
pub struct SseFilter<F: Fn(&str) -> bool> {
    id: Id,
    kind: ListKind,
    keep: F,
    buf: Vec<u8>,
    done: bool,
}

impl<F: Fn(&str) -> bool> SseFilter<F> {
    pub fn new(id: Id, kind: ListKind, keep: F) -> Self {
        Self {
            id,
            kind,
            keep,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Consumes a chunk and returns what can be emitted now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.done {
            return chunk.to_vec();
        }
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.buf.len());
        while let Some((end, sep_len)) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end + sep_len).collect();
            out.extend_from_slice(&self.rewrite(&event[..end], &event[end..]));
        }
        out
    }

    /// Whatever is left at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    fn rewrite(&mut self, event: &[u8], sep: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(event) else {
            return [event, sep].concat();
        };
        let mut data = String::new();
        let mut others: Vec<&str> = Vec::new();
        let mut has_data = false;
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(d) = line.strip_prefix("data:") {
                if has_data {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
                has_data = true;
            } else {
                others.push(line);
            }
        }
        if !has_data {
            return [event, sep].concat();
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
            return [event, sep].concat();
        };
        if v.get("id") != Some(&self.id.to_value()) {
            return [event, sep].concat();
        }
        filter_list_response(&mut v, &self.id, self.kind, &self.keep);
        self.done = true;
        let mut out = String::new();
        for o in others {
            out.push_str(o);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&v.to_string());
        out.push_str("\n\n");
        out.into_bytes()
    }
}

/// Finds the end of the first complete event: (index of the blank-line
/// separator, its length).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\r' && i + 3 < buf.len() && &buf[i..i + 4] == b"\r\n\r\n" {
            return Some((i, 4));
        }
        if buf[i] == b'\r' && buf[i + 1] == b'\r' {
            return Some((i, 2));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(n: &str) -> bool {
        n != "secret"
    }

    #[test]
    fn json_result_is_filtered_and_marked_private() {
        let body = br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"echo"},{"name":"secret"}],"cacheScope":"public","ttlMs":1000}}"#;
        let out = filter_json_body(body, &Id::Num(2.into()), ListKind::Tools, &keep).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
        assert_eq!(v["result"]["tools"][0]["name"], "echo");
        assert_eq!(v["result"]["cacheScope"], "private");
    }

    #[test]
    fn other_ids_are_untouched() {
        let mut v: Value = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"secret"}]}}"#,
        )
        .unwrap();
        assert!(!filter_list_response(
            &mut v,
            &Id::Num(2.into()),
            ListKind::Tools,
            &keep
        ));
        assert_eq!(v["result"]["tools"][0]["name"], "secret");
    }

    #[test]
    fn sse_stream_is_filtered_across_chunk_boundaries() {
        let stream = b"id: 1\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\nevent: message\nid: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"tools\":[{\"name\":\"echo\"},{\"name\":\"secret\"}]}}\n\n";
        let mut f = SseFilter::new(Id::Str("a".into()), ListKind::Tools, keep);
        let mut out = Vec::new();
        for chunk in stream.chunks(7) {
            out.extend(f.push(chunk));
        }
        out.extend(f.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("id: 1\ndata: \n\nevent: message\ndata: {\"jsonrpc\""),
            "{text}"
        );
        assert!(text.contains("event: message\nid: 2\ndata: "), "{text}");
        assert!(text.contains("\"echo\""), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn run(stream: &[u8], cuts: &[usize]) -> Vec<u8> {
            let mut f = SseFilter::new(Id::Num(7.into()), ListKind::Tools, keep);
            let mut out = Vec::new();
            let mut last = 0;
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            for c in cuts {
                out.extend(f.push(&stream[last..c]));
                last = c;
            }
            out.extend(f.push(&stream[last..]));
            out.extend(f.finish());
            out
        }

        proptest! {
            /// However the upstream's bytes are split into chunks, the
            /// client gets the same bytes; streams without the answer pass
            /// through unchanged.
            #[test]
            fn sse_filter_is_independent_of_chunking(
                events in proptest::collection::vec("[a-z :]{0,20}", 0..6),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut stream = String::new();
                for e in &events {
                    stream.push_str("data: ");
                    stream.push_str(e);
                    stream.push_str("\n\n");
                }
                stream.push_str("event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"secret\"},{\"name\":\"ok\"}]}}\n\n");
                let whole = run(stream.as_bytes(), &[]);
                prop_assert_eq!(&run(stream.as_bytes(), &cuts), &whole);
                let text = String::from_utf8(whole).unwrap();
                prop_assert!(!text.contains("secret"));
                prop_assert!(text.contains("\"ok\""));

                let untouched: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
                prop_assert_eq!(run(untouched.as_bytes(), &cuts), untouched.as_bytes().to_vec());
            }
        }
    }
}
