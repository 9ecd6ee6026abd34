//! Just enough HTTP/2 to refuse a gRPC connection in gRPC's own terms: send SETTINGS, answer the
//! client's first call with a trailers-only `RESOURCE_EXHAUSTED` response (the error table's code
//! for too many connections), then GOAWAY so it opens no other stream on this connection. No
//! request is decoded; the header block is written with HPACK literals, which need no table.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::connections::H2_PREFACE;

/// An empty SETTINGS frame: the server's connection preface.
pub const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
const SETTINGS_ACK: [u8; 9] = [0, 0, 0, 4, 1, 0, 0, 0, 0];
const HEADERS: u8 = 1;
const SETTINGS_TYPE: u8 = 4;
const GOAWAY: u8 = 7;
const END_STREAM_AND_HEADERS: u8 = 0x1 | 0x4;
pub const NO_ERROR: u32 = 0;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// gRPC's RESOURCE_EXHAUSTED.
const GRPC_RESOURCE_EXHAUSTED: &[u8] = b"8";
/// The most a refused client may send before it is cut off.
const MAX_INPUT: usize = 64 * 1024;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .min(0xff_ffff);
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&payload[..len as usize]);
    out
}

/// GOAWAY: no stream after `last_stream` will be processed, for `code`, with a reason.
pub fn goaway(last_stream: u32, code: u32, reason: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + reason.len());
    payload.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    frame(GOAWAY, 0, 0, &payload)
}

/// One header as an HPACK "literal without indexing, new name" (names and values under 127
/// bytes, so each length is one byte).
fn literal(block: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    debug_assert!(name.len() < 127 && value.len() < 127);
    block.push(0);
    block.push(name.len() as u8);
    block.extend_from_slice(name);
    block.push(value.len() as u8);
    block.extend_from_slice(value);
}

/// A trailers-only gRPC response on `stream`: status 200, `grpc-status: 8`, `message` (printable
/// ASCII without `%`, so it needs no percent-encoding).
pub fn resource_exhausted(stream: u32, message: &str) -> Vec<u8> {
    let mut block = vec![0x88]; // `:status: 200`, static table entry 8.
    literal(&mut block, b"content-type", b"application/grpc");
    literal(&mut block, b"grpc-status", GRPC_RESOURCE_EXHAUSTED);
    literal(&mut block, b"grpc-message", message.as_bytes());
    frame(HEADERS, END_STREAM_AND_HEADERS, stream, &block)
}

/// Reads the client's preface and frames (SETTINGS already sent); answers its first call with
/// RESOURCE_EXHAUSTED and a GOAWAY. Returns whether a call was answered (not when the client
/// closed, sent something else than HTTP/2, or too much).
pub async fn answer_first_call(stream: &mut TcpStream, message: &str) -> io::Result<bool> {
    let mut buf = BytesMut::with_capacity(4096);
    let mut read = 0usize;
    let mut preface = false;
    loop {
        if !preface && buf.len() >= H2_PREFACE.len() {
            if &buf[..H2_PREFACE.len()] != H2_PREFACE {
                return Ok(false);
            }
            buf.advance(H2_PREFACE.len());
            preface = true;
        }
        while preface && buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            buf.advance(9 + len);
            match kind {
                SETTINGS_TYPE if flags & 1 == 0 => stream.write_all(&SETTINGS_ACK).await?,
                HEADERS if id != 0 => {
                    let mut out = resource_exhausted(id, message);
                    out.extend_from_slice(&goaway(id, NO_ERROR, message));
                    stream.write_all(&out).await?;
                    return Ok(true);
                }
                _ => {}
            }
        }
        if read >= MAX_INPUT {
            return Ok(false);
        }
        let n = tokio::io::AsyncReadExt::read_buf(stream, &mut buf).await?;
        if n == 0 {
            return Ok(false);
        }
        read += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_layout_of_rfc_9113() {
        let g = goaway(3, ENHANCE_YOUR_CALM, "busy");
        assert_eq!(&g[..9], &[0, 0, 12, 7, 0, 0, 0, 0, 0]);
        assert_eq!(&g[9..13], &3u32.to_be_bytes());
        assert_eq!(&g[13..17], &0xbu32.to_be_bytes());
        assert_eq!(&g[17..], b"busy");
        let h = resource_exhausted(1, "busy");
        assert_eq!(h[3], HEADERS);
        assert_eq!(h[4], END_STREAM_AND_HEADERS);
        assert_eq!(&h[5..9], &1u32.to_be_bytes());
        assert_eq!(h[9], 0x88);
        assert_eq!(
            h.len() - 9,
            u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize
        );
    }
}
