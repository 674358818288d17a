//! Identifier, request-id and pagination-token generation.
//!
//! Everything here is a pure function of a counter so that two runs of the same
//! test see the same ids, which keeps failures reproducible.

/// The SplitMix64 finaliser. It is a bijection on `u64`, which is what makes
/// counter-derived ids unique without keeping a set of issued ids.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What an id names. The tag letter keeps ids of different kinds apart even if
/// two mixed counters happened to coincide.
#[derive(Clone, Copy, Debug)]
pub(crate) enum IdKind {
    HitType,
    HitGroup,
    Hit,
    Assignment,
    QualificationType,
    /// Ids used in test notifications: never registered, so they name nothing.
    Placeholder,
}

impl IdKind {
    fn tag(self) -> char {
        match self {
            IdKind::HitType => 'T',
            IdKind::HitGroup => 'G',
            IdKind::Hit => 'H',
            IdKind::Assignment => 'A',
            IdKind::QualificationType => 'Q',
            IdKind::Placeholder => 'Z',
        }
    }

    fn salt(self) -> u64 {
        match self {
            IdKind::HitType => 0x51A7_0001,
            IdKind::HitGroup => 0x51A7_0002,
            IdKind::Hit => 0x51A7_0003,
            IdKind::Assignment => 0x51A7_0004,
            IdKind::QualificationType => 0x51A7_0005,
            IdKind::Placeholder => 0x51A7_0006,
        }
    }
}

const BASE36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn push_base36(out: &mut String, mut value: u64, width: usize) {
    let mut digits = [b'0'; 14];
    let mut i = digits.len();
    while value > 0 && i > 0 {
        i -= 1;
        digits[i] = BASE36[(value % 36) as usize];
        value /= 36;
    }
    let start = digits.len().saturating_sub(width);
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

/// A 30-character upper-case alphanumeric id, shaped like MTurk's
/// (`3` + 29 characters). The first 14 characters after the tag are a
/// bijection of the counter, so ids of one kind never repeat.
pub(crate) fn entity_id(kind: IdKind, counter: u64) -> String {
    let a = mix64(counter ^ kind.salt());
    let b = mix64(a ^ kind.salt().rotate_left(29));
    let mut id = String::with_capacity(30);
    id.push('3');
    id.push(kind.tag());
    push_base36(&mut id, a, 14);
    push_base36(&mut id, b, 14);
    id
}

fn push_hex(out: &mut String, value: u64, width: usize) {
    let hex = format!("{value:016x}");
    out.push_str(&hex[16 - width.min(16)..]);
}

/// A UUID-shaped request id, as AWS services put in `x-amzn-RequestId`.
pub(crate) fn request_id(counter: u64) -> String {
    let a = mix64(counter ^ 0x0EE5_0001);
    let b = mix64(a);
    let mut id = String::with_capacity(36);
    push_hex(&mut id, a >> 32, 8);
    id.push('-');
    push_hex(&mut id, (a >> 16) & 0xFFFF, 4);
    id.push('-');
    push_hex(&mut id, 0x4000 | (a & 0x0FFF), 4);
    id.push('-');
    push_hex(&mut id, 0x8000 | ((b >> 48) & 0x3FFF), 4);
    id.push('-');
    push_hex(&mut id, b & 0xFFFF_FFFF_FFFF, 12);
    id
}

/// A 40-hex-digit event document id; unique per counter value.
pub(crate) fn event_doc_id(counter: u64) -> String {
    let a = mix64(counter ^ 0xE7E7_0001);
    let b = mix64(a);
    let c = mix64(b);
    let mut id = String::with_capacity(40);
    push_hex(&mut id, a, 16);
    push_hex(&mut id, b, 16);
    push_hex(&mut id, c, 8);
    id
}

/// Pagination tokens carry the listing they belong to and the position of the
/// next item in that listing's append-only order, so pages stay stable when
/// items are added or disposed of between calls.
pub(crate) fn encode_token(listing: &str, scope: &str, position: usize) -> String {
    let plain = format!("v1\u{1f}{listing}\u{1f}{scope}\u{1f}{position}");
    let mut out = String::with_capacity(plain.len() * 2);
    for byte in plain.bytes() {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// `None` for anything that is not a token this double issued for the same
/// listing and scope.
pub(crate) fn decode_token(token: &str, listing: &str, scope: &str) -> Option<usize> {
    if !token.is_ascii() {
        return None;
    }
    let mut bytes = Vec::with_capacity(token.len() / 2);
    for pair in token.as_bytes().chunks(2) {
        let pair = std::str::from_utf8(pair).ok().filter(|p| p.len() == 2)?;
        bytes.push(u8::from_str_radix(pair, 16).ok()?);
    }
    let plain = String::from_utf8(bytes).ok()?;
    let mut parts = plain.split('\u{1f}');
    if parts.next()? != "v1" || parts.next()? != listing || parts.next()? != scope {
        return None;
    }
    let position = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn entity_ids_are_thirty_upper_alphanumerics_and_unique() {
        let mut seen = HashSet::new();
        for n in 0..10_000 {
            let id = entity_id(IdKind::Hit, n);
            assert_eq!(id.len(), 30);
            assert!(id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
            assert!(seen.insert(id));
        }
        assert_eq!(entity_id(IdKind::Hit, 7), entity_id(IdKind::Hit, 7));
        assert_ne!(entity_id(IdKind::Hit, 7), entity_id(IdKind::Assignment, 7));
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = request_id(3);
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }

    #[test]
    fn tokens_round_trip_only_within_their_listing() {
        let token = encode_token("ListHITs", "", 120);
        assert_eq!(decode_token(&token, "ListHITs", ""), Some(120));
        assert_eq!(decode_token(&token, "ListHITs", "x"), None);
        assert_eq!(decode_token(&token, "ListQualificationTypes", ""), None);
        assert_eq!(decode_token("zz", "ListHITs", ""), None);
        assert_eq!(decode_token("abc", "ListHITs", ""), None);
        assert_eq!(decode_token("é", "ListHITs", ""), None);
    }
}
