//! Export for a SIEM: JSON Lines (one object per record) or a logfmt-like
//! text line, streamed from the store; the live sink writes the same JSON
//! lines.
//!
//! A JSON line has, always and in this order: `time` (RFC 3339, UTC,
//! milliseconds), `time_ms`, `chain`, `seq`, `kind`, `route`, `subject`,
//! `client_id`, `method`, `name`, `outcome`, `reason`, `policy_ids` (array),
//! `args_digest`, `latency_us`, `peer`, `details` (object), `prev_hash` and
//! `hash` (hex); absent values are `null`. With `prev_hash` and `hash` a
//! SIEM can check the chain's linkage on its own; checking its hashes needs
//! the encoding in [`chain`](crate#the-chain), its tags the master key.

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use mcpgate_store::{AuditRecord, AuditStore};

use crate::AuditError;

/// Records per store query.
const PAGE: u32 = 1000;

/// How [`export`] writes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// One JSON object per line ([`json_line`]).
    #[default]
    JsonLines,
    /// One human-readable line per record ([`text_line`]).
    Text,
}

/// What [`export`] writes.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only records with `time_ms` at or after this (unix milliseconds).
    pub since_ms: Option<i64>,
    /// Only records after this `seq` (of every chain exported).
    pub after_seq: Option<u64>,
    /// Only this chain; every chain (one after the other, by id) if `None`.
    pub chain_id: Option<String>,
    pub format: ExportFormat,
}

/// Writes the records `options` selects to `out`, chain by chain in `seq`
/// order, one line each, and flushes; returns how many. Memory stays
/// bounded: records are read a page (1000) at a time.
pub async fn export<W>(
    store: &dyn AuditStore,
    options: &ExportOptions,
    out: &mut W,
) -> Result<u64, AuditError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let chains = match &options.chain_id {
        Some(chain) => vec![chain.clone()],
        None => store.audit_chains().await?,
    };
    let mut written = 0u64;
    let mut buf = String::new();
    for chain in chains {
        let mut after = options
            .after_seq
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        if let Some(since) = options.since_ms {
            match store.audit_first_seq_since(&chain, since).await? {
                Some(first) => after = after.max(first - 1),
                None => continue,
            }
        }
        loop {
            let page = store
                .audit_records(&chain, after, options.since_ms, PAGE)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            buf.clear();
            for rec in &page {
                match options.format {
                    ExportFormat::JsonLines => buf.push_str(&json_line(rec)),
                    ExportFormat::Text => buf.push_str(&text_line(rec)),
                }
                buf.push('\n');
            }
            out.write_all(buf.as_bytes()).await?;
            written += page.len() as u64;
        }
    }
    out.flush().await?;
    Ok(written)
}

/// One JSON line, without the newline. See the [module documentation](self).
pub fn json_line(rec: &AuditRecord) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        time: String,
        time_ms: i64,
        chain: &'a str,
        seq: i64,
        kind: &'a str,
        route: Option<&'a str>,
        subject: Option<&'a str>,
        client_id: Option<&'a str>,
        method: Option<&'a str>,
        name: Option<&'a str>,
        outcome: &'a str,
        reason: Option<&'a str>,
        policy_ids: Json,
        args_digest: Option<&'a str>,
        latency_us: Option<i64>,
        peer: Option<&'a str>,
        details: Option<Json>,
        prev_hash: String,
        hash: String,
    }
    let line = Line {
        time: rfc3339_ms(rec.time_ms),
        time_ms: rec.time_ms,
        chain: &rec.chain_id,
        seq: rec.seq,
        kind: &rec.kind,
        route: rec.route.as_deref(),
        subject: rec.subject.as_deref(),
        client_id: rec.client_id.as_deref(),
        method: rec.method.as_deref(),
        name: rec.name.as_deref(),
        outcome: &rec.outcome,
        reason: rec.reason.as_deref(),
        policy_ids: Json::of(&rec.policy_ids),
        args_digest: rec.args_digest.as_deref(),
        latency_us: rec.latency_us,
        peer: rec.peer.as_deref(),
        details: rec.details.as_deref().map(Json::of),
        prev_hash: crate::hex(&rec.prev_hash),
        hash: crate::hex(&rec.hash),
    };
    // Serialising plain strings, integers and already-valid JSON cannot
    // fail; should it ever, the line still says which record it was.
    serde_json::to_string(&line).unwrap_or_else(|_| {
        format!(
            r#"{{"chain":{},"seq":{},"error":"unserialisable audit record"}}"#,
            serde_json::Value::from(rec.chain_id.as_str()),
            rec.seq
        )
    })
}

/// A JSON column: embedded as is when it is valid JSON, else (a row edited
/// by hand) as a string.
#[derive(Serialize)]
#[serde(untagged)]
enum Json {
    Raw(Box<RawValue>),
    Text(String),
}

impl Json {
    fn of(text: &str) -> Self {
        RawValue::from_string(text.to_owned())
            .map_or_else(|_| Json::Text(text.to_owned()), Json::Raw)
    }
}

/// One human-readable line, without the newline: time, `chain#seq`, kind,
/// then the present fields as `key=value` (values with spaces, quotes or `=`
/// JSON-quoted).
pub fn text_line(rec: &AuditRecord) -> String {
    let mut line = format!(
        "{} {}#{} {} outcome={}",
        rfc3339_ms(rec.time_ms),
        rec.chain_id,
        rec.seq,
        rec.kind,
        quote(&rec.outcome)
    );
    let fields = [
        ("route", rec.route.as_deref()),
        ("subject", rec.subject.as_deref()),
        ("client_id", rec.client_id.as_deref()),
        ("method", rec.method.as_deref()),
        ("name", rec.name.as_deref()),
        ("reason", rec.reason.as_deref()),
        ("args_digest", rec.args_digest.as_deref()),
        ("peer", rec.peer.as_deref()),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            line.push_str(&format!(" {key}={}", quote(value)));
        }
    }
    if rec.policy_ids != "[]" {
        line.push_str(&format!(" policy_ids={}", rec.policy_ids));
    }
    if let Some(us) = rec.latency_us {
        line.push_str(&format!(" latency_us={us}"));
    }
    if let Some(details) = &rec.details {
        line.push_str(&format!(" details={details}"));
    }
    line
}

fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '='));
    if plain {
        value.to_owned()
    } else {
        serde_json::Value::from(value).to_string()
    }
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds:
/// `2026-03-01T12:00:00.000Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// A `--since` value: an RFC 3339 time (`2026-03-01T12:00:00Z`, offsets and
/// fractions allowed), a date (`2026-03-01`, midnight UTC), or a duration
/// back from `now_ms` (`90s`, `15m`, `24h`, `7d`). Returns unix milliseconds.
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, AuditError> {
    let bad = || AuditError::InvalidTime(text.to_owned());
    let text = text.trim();
    if let Some(unit) = text.chars().last().filter(|c| "smhd".contains(*c)) {
        let number = &text[..text.len() - 1];
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = number.parse().map_err(|_| bad())?;
            let unit_ms = match unit {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return n
                .checked_mul(unit_ms)
                .and_then(|back| now_ms.checked_sub(back))
                .ok_or_else(bad);
        }
    }
    parse_rfc3339(text).ok_or_else(bad)
}

fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-')) {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if b.len() == 10 {
        return days.checked_mul(86_400_000);
    }
    if !(matches!(b.get(10), Some(b'T' | b't' | b' ')) && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // 60: a leap second, read as the next second's start.
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut i = 19;
    let mut milli = 0;
    if sep(i, b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds: the first three digits, right-padded.
        let digits = &text[start..i.min(start + 3)];
        milli = format!("{digits:0<3}").parse().ok()?;
    }
    let offset_s = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == i + 6 && sep(i + 3, b':') => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = oh * 3600 + om * 60;
            if sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_s;
    secs.checked_mul(1000)?.checked_add(milli)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_parse_inverts_format_across_days() {
        for ms in [0, 1, 951_782_400_000, 1_700_000_000_123, 4_102_444_799_999] {
            assert_eq!(parse_rfc3339(&rfc3339_ms(ms)), Some(ms), "{ms}");
        }
        // Years 0000 to 9999, as RFC 3339 has them.
        let mut day = -719_000;
        while day < 2_900_000 {
            let ms = day * 86_400_000 + 3_723_004;
            assert_eq!(parse_rfc3339(&rfc3339_ms(ms)), Some(ms));
            day += 997;
        }
    }

    #[test]
    fn since_accepts_rfc3339_dates_and_durations() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_since("2023-11-14T22:13:20Z", now).unwrap(), now);
        assert_eq!(
            parse_since("2023-11-14T23:13:20.5+01:00", now).unwrap(),
            now + 500
        );
        assert_eq!(
            parse_since("2023-11-14t22:13:20.123456z", now).unwrap(),
            now + 123
        );
        assert_eq!(parse_since("2023-11-14", now).unwrap(), 1_699_920_000_000);
        assert_eq!(parse_since("90s", now).unwrap(), now - 90_000);
        assert_eq!(parse_since("15m", now).unwrap(), now - 900_000);
        assert_eq!(parse_since("24h", now).unwrap(), now - 86_400_000);
        assert_eq!(parse_since("7d", now).unwrap(), now - 604_800_000);
        for bad in [
            "",
            "s",
            "-5m",
            "5w",
            "2023-13-01",
            "2023-02-29",
            "2023-11-14T25:00:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "yesterday",
            "99999999999999999999d",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    fn rec() -> AuditRecord {
        AuditRecord {
            chain_id: "main".into(),
            seq: 7,
            time_ms: 1_700_000_000_123,
            kind: "mcp_request".into(),
            route: Some("github".into()),
            subject: Some("alice smith".into()),
            client_id: None,
            method: Some("tools/call".into()),
            name: Some("search".into()),
            outcome: "ok".into(),
            reason: None,
            policy_ids: r#"["p1"]"#.into(),
            args_digest: None,
            latency_us: Some(1200),
            peer: None,
            details: Some(r#"{"jti":"x"}"#.into()),
            prev_hash: vec![0; 32],
            hash: vec![0xab; 32],
            tag: "t".into(),
        }
    }

    #[test]
    fn json_line_has_every_field_in_order() {
        let line = json_line(&rec());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["kind"], "mcp_request");
        assert_eq!(v["client_id"], serde_json::Value::Null);
        assert_eq!(v["policy_ids"], serde_json::json!(["p1"]));
        assert_eq!(v["details"]["jti"], "x");
        assert_eq!(v["hash"], "ab".repeat(32));
        assert!(
            line.starts_with(r#"{"time":"2023-11-14T22:13:20.123Z","time_ms":"#),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert!(!line.contains("\"tag\""), "tags are not exported");

        let mut edited = rec();
        edited.policy_ids = "not json".into();
        let v: serde_json::Value = serde_json::from_str(&json_line(&edited)).unwrap();
        assert_eq!(v["policy_ids"], "not json");
    }

    #[test]
    fn text_line_quotes_values_with_spaces() {
        assert_eq!(
            text_line(&rec()),
            "2023-11-14T22:13:20.123Z main#7 mcp_request outcome=ok route=github \
             subject=\"alice smith\" method=tools/call name=search policy_ids=[\"p1\"] \
             latency_us=1200 details={\"jti\":\"x\"}"
        );
    }
}
