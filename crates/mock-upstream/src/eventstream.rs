//! AWS event stream framing (`application/vnd.amazon.eventstream`), the
//! binary envelope Bedrock's `ConverseStream` answers in: each message is a
//! 12-byte prelude (total length, headers length, CRC32 of those 8 bytes),
//! typed headers, the payload, and a CRC32 of everything before it.

use bytes::Bytes;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as the event
/// stream checksums its prelude and messages.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        let idx = ((crc ^ u32::from(*b)) & 0xff) as usize;
        crc = CRC_TABLE[idx] ^ (crc >> 8);
    }
    !crc
}

static CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

/// Header value type 7: a UTF-8 string with a 2-byte big-endian length.
const STRING: u8 = 7;

/// One framed message with string-valued headers, in the given order.
pub(crate) fn message(headers: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut head = Vec::new();
    for (name, value) in headers {
        // Names and values here are short constants; the casts cannot truncate.
        head.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        head.extend_from_slice(name.as_bytes());
        head.push(STRING);
        head.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        head.extend_from_slice(value.as_bytes());
    }
    let total = 12 + head.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(head.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

/// An `event` message (`:event-type` names the union member).
pub(crate) fn event(event_type: &str, payload: &[u8]) -> Bytes {
    message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// An `exception` message (`:exception-type` names the modeled error).
pub(crate) fn exception(exception_type: &str, payload: &[u8]) -> Bytes {
    message(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn framing() {
        let m = event("messageStart", br#"{"role":"assistant"}"#);
        let total = u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize;
        let headers = u32::from_be_bytes([m[4], m[5], m[6], m[7]]) as usize;
        assert_eq!(total, m.len());
        assert_eq!(
            u32::from_be_bytes([m[8], m[9], m[10], m[11]]),
            crc32(&m[..8])
        );
        let end = m.len() - 4;
        assert_eq!(
            u32::from_be_bytes([m[end], m[end + 1], m[end + 2], m[end + 3]]),
            crc32(&m[..end])
        );
        assert_eq!(&m[12 + headers..end], br#"{"role":"assistant"}"#);
        // First header: ":event-type" = "messageStart".
        assert_eq!(m[12] as usize, ":event-type".len());
        assert_eq!(&m[13..24], b":event-type");
        assert_eq!(m[24], STRING);
        assert_eq!(&m[27..39], b"messageStart");
    }
}
