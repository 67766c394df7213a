//! RFC 2198 redundant audio (RED) for Opus, in the form Chromium negotiates it:
//! `a=rtpmap:63 red/48000/2` with `a=fmtp:63 111/111` — every block is an Opus packet, and
//! the redundant blocks are copies of the packets sent just before.
//!
//! A RED payload is a list of block headers followed by the blocks. A redundant block's
//! header is 4 bytes: F=1, its payload type (7 bits), how many RTP ticks it is older than
//! the packet (14 bits) and its length (10 bits). The last header, the primary's, is one
//! byte: F=0 and its payload type; the primary takes the rest of the payload.
//!
//! Written here rather than taken from a crate: webrtc-rs 0.21 negotiates RED but neither
//! builds nor opens its payloads, and the format is these few lines.

use bytes::{BufMut, Bytes, BytesMut};

/// The MIME type webrtc-rs and browsers give RED.
pub const MIME_TYPE_RED: &str = "audio/red";
/// The payload type we offer RED at: Chromium's, so offers from both look alike.
pub const DEFAULT_RED_PT: u8 = 63;
/// Most redundant blocks we read from one packet; libwebrtc sends at most two, and a
/// packet claiming dozens is broken or hostile.
const MAX_BLOCKS: usize = 8;
/// Largest timestamp offset the 14-bit field holds (341 ms at 48 kHz).
pub const MAX_OFFSET: u32 = (1 << 14) - 1;
/// Largest block the 10-bit length field holds.
pub const MAX_BLOCK: usize = (1 << 10) - 1;

/// One block of a RED payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// RTP ticks this block is older than the packet's timestamp (0 for the primary).
    pub ts_offset: u32,
    /// Payload type of the block's encoding.
    pub payload_type: u8,
    /// The encoded frame.
    pub payload: Bytes,
}

/// A parsed RED payload: redundant blocks oldest first, then the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedPayload {
    /// Copies of earlier packets, oldest first (as they are sent).
    pub redundant: Vec<Block>,
    /// This packet's own frame.
    pub primary: Block,
}

/// Why a RED payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedError {
    /// The payload ends inside the block headers.
    #[error("RED payload ends inside its headers")]
    TruncatedHeader,
    /// The block lengths add up to more than the payload holds.
    #[error("RED block lengths exceed the payload")]
    TruncatedBlock,
    /// More redundant blocks than any sender uses.
    #[error("RED payload with too many blocks")]
    TooManyBlocks,
}

/// Splits a RED payload into its blocks (zero-copy: the blocks share `payload`'s memory).
pub fn parse(payload: &Bytes) -> Result<RedPayload, RedError> {
    let mut headers = Vec::new();
    let mut pos = 0;
    let primary_pt = loop {
        let first = *payload.get(pos).ok_or(RedError::TruncatedHeader)?;
        if first & 0x80 == 0 {
            pos += 1;
            break first & 0x7f;
        }
        let h = payload.get(pos..pos + 4).ok_or(RedError::TruncatedHeader)?;
        if headers.len() == MAX_BLOCKS {
            return Err(RedError::TooManyBlocks);
        }
        let ts_offset = (u32::from(h[1]) << 6) | (u32::from(h[2]) >> 2);
        let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
        headers.push((first & 0x7f, ts_offset, len));
        pos += 4;
    };
    let mut redundant = Vec::with_capacity(headers.len());
    for (payload_type, ts_offset, len) in headers {
        if pos + len > payload.len() {
            return Err(RedError::TruncatedBlock);
        }
        redundant.push(Block {
            ts_offset,
            payload_type,
            payload: payload.slice(pos..pos + len),
        });
        pos += len;
    }
    Ok(RedPayload {
        redundant,
        primary: Block {
            ts_offset: 0,
            payload_type: primary_pt,
            payload: payload.slice(pos..),
        },
    })
}

/// Builds a RED payload: `redundant` (oldest first, each `(ticks older, frame)`) then the
/// primary frame, all of payload type `payload_type`. Blocks the format cannot carry (older
/// than [`MAX_OFFSET`], longer than [`MAX_BLOCK`], or empty) are left out.
pub fn build(payload_type: u8, redundant: &[(u32, &[u8])], primary: &[u8]) -> Bytes {
    let usable = || {
        redundant
            .iter()
            .filter(|(offset, b)| *offset <= MAX_OFFSET && !b.is_empty() && b.len() <= MAX_BLOCK)
    };
    let size = usable().map(|(_, b)| 4 + b.len()).sum::<usize>() + 1 + primary.len();
    let mut out = BytesMut::with_capacity(size);
    for (offset, block) in usable() {
        out.put_u8(0x80 | (payload_type & 0x7f));
        // Offset (14 bits) then length (10 bits), big-endian across three bytes.
        let word = (offset << 10) | block.len() as u32;
        out.put_u8((word >> 16) as u8);
        out.put_u8((word >> 8) as u8);
        out.put_u8(word as u8);
    }
    out.put_u8(payload_type & 0x7f);
    for (_, block) in usable() {
        out.put_slice(block);
    }
    out.put_slice(primary);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse_gives_the_blocks_back() {
        let a = [1u8; 100];
        let b = [2u8; 200];
        let p = [3u8; 150];
        let red = build(111, &[(1920, &a), (960, &b)], &p);
        assert_eq!(red.len(), 4 + 4 + 1 + 100 + 200 + 150);
        let parsed = parse(&red).expect("valid RED");
        assert_eq!(parsed.redundant.len(), 2);
        assert_eq!(parsed.redundant[0].ts_offset, 1920);
        assert_eq!(parsed.redundant[0].payload.as_ref(), &a);
        assert_eq!(parsed.redundant[1].ts_offset, 960);
        assert_eq!(parsed.redundant[1].payload.as_ref(), &b);
        assert_eq!(parsed.primary.payload_type, 111);
        assert_eq!(parsed.primary.payload.as_ref(), &p);
    }

    #[test]
    fn parses_the_bytes_rfc_2198_lays_out() {
        // One redundant block of PT 111, 960 ticks old, 3 bytes; then the primary, PT 111.
        // 960 << 10 | 3 = 0x0F0003.
        let red = Bytes::from_static(&[0xEF, 0x0F, 0x00, 0x03, 0x6F, 9, 9, 9, 7, 7]);
        let parsed = parse(&red).expect("valid RED");
        assert_eq!(
            parsed.redundant,
            vec![Block {
                ts_offset: 960,
                payload_type: 111,
                payload: Bytes::from_static(&[9, 9, 9]),
            }]
        );
        assert_eq!(parsed.primary.payload.as_ref(), &[7, 7]);
        assert_eq!(build(111, &[(960, &[9, 9, 9])], &[7, 7]), red);
    }

    #[test]
    fn primary_only_packet_has_no_redundancy() {
        let parsed = parse(&build(111, &[], &[5, 6])).expect("valid RED");
        assert!(parsed.redundant.is_empty());
        assert_eq!(parsed.primary.payload.as_ref(), &[5, 6]);
    }

    #[test]
    fn broken_payloads_are_errors_not_panics() {
        assert_eq!(parse(&Bytes::new()), Err(RedError::TruncatedHeader));
        assert_eq!(
            parse(&Bytes::from_static(&[0xEF, 0x0F])),
            Err(RedError::TruncatedHeader)
        );
        // Claims a 3-byte block but holds one byte.
        assert_eq!(
            parse(&Bytes::from_static(&[0xEF, 0x0F, 0x00, 0x03, 0x6F, 9])),
            Err(RedError::TruncatedBlock)
        );
        let many: Vec<u8> = std::iter::repeat_n([0xEF, 0, 0, 0], 20).flatten().collect();
        assert_eq!(parse(&Bytes::from(many)), Err(RedError::TooManyBlocks));
    }

    #[test]
    fn blocks_the_format_cannot_carry_are_left_out() {
        let long = [0u8; 1100];
        let red = build(
            111,
            &[(MAX_OFFSET + 1, &[1]), (960, &long), (960, &[])],
            &[4],
        );
        let parsed = parse(&red).expect("valid RED");
        assert!(parsed.redundant.is_empty());
        assert_eq!(parsed.primary.payload.as_ref(), &[4]);
    }
}
