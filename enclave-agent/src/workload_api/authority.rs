//! Makes gRPC C-core clients (Python's grpcio, hence py-spiffe; also
//! grpc-java and grpc-swift) work with the tonic server over a Unix socket.
//!
//! Why: those clients send the socket path, %-encoded, as the HTTP/2
//! `:authority` (e.g. `%2Frun%2Fenclave-agent%2Fworkload-api.sock`), and
//! h2, under tonic, resets any request whose `:authority` is not a valid URI
//! authority with `PROTOCOL_ERROR` (hyperium/h2 pull request 487, open;
//! grpc/grpc issue 38142). go-spiffe and the Rust `spiffe` crate send
//! `localhost` and are unaffected.
//!
//! How: each accepted connection is relayed to tonic through an in-memory
//! pipe. The server's direction passes byte for byte. In the client's
//! direction every frame passes unchanged except header blocks (`HEADERS`
//! and its `CONTINUATION`s): they are decoded (HPACK, with the client's
//! dynamic table), an invalid `:authority` becomes `localhost`, and the
//! block is re-encoded as plain literals (never indexed, no Huffman), so
//! h2's decoder needs no state from us. Anything that does not parse ends
//! the connection: nothing unparsed reaches h2 from here.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Frame types and flags used here (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The default SETTINGS_MAX_FRAME_SIZE, which h2 keeps: the largest frame
/// we write, and the largest we accept.
const MAX_FRAME: usize = 16_384;
/// Largest header block accepted (the sum of its frames).
const MAX_BLOCK: usize = 64 * 1024;
/// The largest dynamic table a client may ask for (HTTP/2's default), and
/// the most a header block may decode to: without them, indexed references
/// to one large table entry expand a 64 KiB block a thousandfold.
const MAX_TABLE: usize = 4096;
const MAX_DECODED: usize = 64 * 1024;
/// What replaces an invalid `:authority`.
const LOCAL: &[u8] = b"localhost";

/// A connection that cannot be relayed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Not HTTP/2 as this relay reads it.
    #[error("malformed HTTP/2 from the client: {0}")]
    Malformed(&'static str),
}

/// Relays `client` to the returned pipe end, which tonic serves.
pub(super) fn relay(client: UnixStream) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let (client_read, mut client_write) = client.into_split();
        let (server_read, mut server_write) = tokio::io::split(ours);
        let mut server_read = server_read;
        let upstream = rewrite(client_read, &mut server_write);
        let downstream = tokio::io::copy(&mut server_read, &mut client_write);
        // When either direction ends, the connection is over.
        tokio::select! {
            _ = upstream => {}
            _ = downstream => {}
        }
    });
    theirs
}

/// The client's frames from `from` to `to`, header blocks rewritten.
async fn rewrite<R, W>(mut from: R, to: &mut W) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; 24];
    from.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(RelayError::Malformed("no HTTP/2 preface"));
    }
    to.write_all(&preface).await?;
    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(MAX_TABLE);
    loop {
        let Some((head, payload)) = read_frame(&mut from).await? else {
            return Ok(());
        };
        let (kind, flags) = (head[3], head[4]);
        if kind != HEADERS {
            to.write_all(&head).await?;
            to.write_all(&payload).await?;
            continue;
        }
        let stream = [head[5], head[6], head[7], head[8]];
        let mut block = fragment(&payload, flags)?.to_vec();
        let mut end = flags & END_HEADERS != 0;
        while !end {
            let (next, more) = read_frame(&mut from)
                .await?
                .ok_or(RelayError::Malformed("a header block cut short"))?;
            if next[3] != CONTINUATION || next[5..9] != stream {
                return Err(RelayError::Malformed("a header block interrupted"));
            }
            block.extend_from_slice(&more);
            if block.len() > MAX_BLOCK {
                return Err(RelayError::Malformed("a header block too large"));
            }
            end = next[4] & END_HEADERS != 0;
        }
        let mut headers = Vec::new();
        let mut decoded = 0usize;
        decoder
            .decode_with_cb(&block, |name, value| {
                decoded = decoded.saturating_add(name.len() + value.len() + 32);
                if decoded <= MAX_DECODED {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|_| RelayError::Malformed("an undecodable header block"))?;
        if decoded > MAX_DECODED {
            return Err(RelayError::Malformed(
                "a header block that decodes too large",
            ));
        }
        let encoded = encode(&fix_authority(headers));
        write_block(to, &encoded, flags & END_STREAM, stream).await?;
    }
}

/// One frame: its 9-byte head and payload; `None` at a clean end.
async fn read_frame<R: AsyncRead + Unpin>(
    from: &mut R,
) -> Result<Option<([u8; 9], Vec<u8>)>, RelayError> {
    let mut head = [0u8; 9];
    match from.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    if length > MAX_FRAME {
        return Err(RelayError::Malformed("a frame larger than 16 KiB"));
    }
    let mut payload = vec![0u8; length];
    from.read_exact(&mut payload).await?;
    Ok(Some((head, payload)))
}

/// The header block fragment of a `HEADERS` payload (padding and priority
/// removed).
fn fragment(payload: &[u8], flags: u8) -> Result<&[u8], RelayError> {
    let bad = RelayError::Malformed("a HEADERS frame with bad padding");
    let (mut start, mut end) = (0usize, payload.len());
    if flags & PADDED != 0 {
        let pad = usize::from(*payload.first().ok_or(bad)?);
        start = 1;
        end = end
            .checked_sub(pad)
            .ok_or(RelayError::Malformed("padding longer than the frame"))?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or(RelayError::Malformed("a HEADERS frame too short"))
}

/// The headers with an `:authority` that is not a valid URI authority
/// replaced by `localhost`.
fn fix_authority(mut headers: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    for (name, value) in &mut headers {
        if name.as_slice() == b":authority"
            && tonic::codegen::http::uri::Authority::try_from(value.as_slice()).is_err()
        {
            *value = LOCAL.to_vec();
        }
    }
    headers
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), `first` holding
/// the bits above the prefix.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literals never indexed, with literal names, no
/// Huffman (RFC 7541 §6.2.3): stateless for both sides.
fn encode(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x10);
        integer(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        integer(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// Writes `block` as `HEADERS` (+ `CONTINUATION`s) on `stream`.
async fn write_block<W: AsyncWrite + Unpin>(
    to: &mut W,
    block: &[u8],
    end_stream: u8,
    stream: [u8; 4],
) -> Result<(), RelayError> {
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let mut kind = HEADERS;
    let mut flags = end_stream;
    if chunks.peek().is_none() {
        // An empty block still needs its frame.
        let head = frame_head(0, kind, flags | END_HEADERS, stream);
        to.write_all(&head).await?;
        return Ok(());
    }
    while let Some(chunk) = chunks.next() {
        if chunks.peek().is_none() {
            flags |= END_HEADERS;
        }
        to.write_all(&frame_head(chunk.len(), kind, flags, stream))
            .await?;
        to.write_all(chunk).await?;
        kind = CONTINUATION;
        flags = 0;
    }
    Ok(())
}

fn frame_head(length: usize, kind: u8, flags: u8, stream: [u8; 4]) -> [u8; 9] {
    let [_, a, b, c] = u32::try_from(length).unwrap_or(0).to_be_bytes();
    [
        a, b, c, kind, flags, stream[0], stream[1], stream[2], stream[3],
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn an_invalid_authority_becomes_localhost_and_nothing_else_changes() {
        let fixed = fix_authority(pairs(&[
            (":method", "POST"),
            (":authority", "%2Frun%2Fagent%2Fapi.sock"),
            ("workload.spiffe.io", "true"),
        ]));
        assert_eq!(
            fixed,
            pairs(&[
                (":method", "POST"),
                (":authority", "localhost"),
                ("workload.spiffe.io", "true"),
            ])
        );
        let kept = pairs(&[(":authority", "localhost:1234")]);
        assert_eq!(fix_authority(kept.clone()), kept);
    }

    #[test]
    fn the_stateless_encoding_decodes_back_to_the_same_headers() {
        let long = "x".repeat(300);
        let headers = pairs(&[
            (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
            ("big", &long),
        ]);
        let mut decoder = loona_hpack::Decoder::new();
        assert_eq!(decoder.decode(&encode(&headers)).unwrap(), headers);
    }

    /// A block that indexes one large dynamic-table entry many times (a
    /// decompression bomb) is refused, and so is a table larger than 4 KiB.
    #[tokio::test]
    async fn a_header_block_that_decodes_too_large_or_a_huge_table_is_refused() {
        let stream = [0, 0, 0, 1];
        let run = |block: Vec<u8>| async move {
            let mut input = PREFACE.to_vec();
            input.extend_from_slice(&frame_head(block.len(), HEADERS, END_HEADERS, stream));
            input.extend_from_slice(&block);
            let mut output = Vec::new();
            rewrite(input.as_slice(), &mut output).await
        };
        // A literal with incremental indexing (3 KiB value), then 64 indexed
        // references to it (dynamic index 62): about 200 KiB decoded.
        let mut encoder = loona_hpack::Encoder::new();
        let big = "v".repeat(3000);
        let mut block = encoder.encode([(b"x-big".as_slice(), big.as_bytes())]);
        block.extend(std::iter::repeat_n(0x80 | 62, 64));
        assert!(matches!(run(block).await, Err(RelayError::Malformed(_))));
        // A dynamic table size update to 1 MiB: 001 prefix, 5-bit integer.
        let mut update = vec![0x3f];
        let mut rest = (1usize << 20) - 31;
        while rest >= 128 {
            update.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        update.push(rest as u8);
        assert!(matches!(run(update).await, Err(RelayError::Malformed(_))));
    }

    /// A client's compressed block (Huffman, dynamic table), as a real
    /// HPACK encoder writes it, goes through `rewrite` and comes out a
    /// block h2 reads with `:authority` fixed; other frames pass as they are.
    #[tokio::test]
    async fn frames_are_relayed_with_the_header_block_rewritten() {
        let headers = pairs(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/SpiffeWorkloadAPI/FetchX509SVID"),
            (":authority", "%2Ftmp%2Fapi.sock"),
            ("workload.spiffe.io", "true"),
        ]);
        let mut encoder = loona_hpack::Encoder::new();
        let compressed = encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        // Split over HEADERS (padded) + CONTINUATION, then a DATA frame.
        let stream = [0, 0, 0, 1];
        let (first, rest) = compressed.split_at(compressed.len() / 2);
        let mut input = PREFACE.to_vec();
        let mut padded = vec![3u8];
        padded.extend_from_slice(first);
        padded.extend_from_slice(&[0, 0, 0]);
        input.extend_from_slice(&frame_head(padded.len(), HEADERS, PADDED, stream));
        input.extend_from_slice(&padded);
        input.extend_from_slice(&frame_head(rest.len(), CONTINUATION, END_HEADERS, stream));
        input.extend_from_slice(rest);
        input.extend_from_slice(&frame_head(5, 0x0, END_STREAM, stream));
        input.extend_from_slice(&[0, 0, 0, 0, 0]);
        let mut output = Vec::new();
        rewrite(input.as_slice(), &mut output).await.unwrap();

        assert_eq!(&output[..24], PREFACE);
        let head = &output[24..33];
        let length = usize::from(head[1]) << 8 | usize::from(head[2]);
        assert_eq!((head[3], head[4]), (HEADERS, END_HEADERS));
        let block = &output[33..33 + length];
        let decoded = loona_hpack::Decoder::new().decode(block).unwrap();
        let mut expected = headers.clone();
        expected[3].1 = b"localhost".to_vec();
        assert_eq!(decoded, expected);
        assert_eq!(
            &output[33 + length..],
            &[
                &frame_head(5, 0x0, END_STREAM, stream)[..],
                &[0, 0, 0, 0, 0]
            ]
            .concat()[..]
        );
    }

    #[tokio::test]
    async fn what_does_not_parse_is_refused() {
        let mut out = Vec::new();
        assert!(rewrite(&b"GET / HTTP/1.1\r\n\r\n........"[..], &mut out)
            .await
            .is_err());
        // A frame that claims more than 16 KiB.
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&[0x01, 0x00, 0x00, HEADERS, END_HEADERS, 0, 0, 0, 1]);
        assert!(rewrite(input.as_slice(), &mut Vec::new()).await.is_err());
        // Padding longer than the frame; an undecodable block.
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame_head(2, HEADERS, PADDED | END_HEADERS, [0, 0, 0, 1]));
        input.extend_from_slice(&[9, 0]);
        assert!(rewrite(input.as_slice(), &mut Vec::new()).await.is_err());
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&frame_head(1, HEADERS, END_HEADERS, [0, 0, 0, 1]));
        input.extend_from_slice(&[0xff]);
        assert!(rewrite(input.as_slice(), &mut Vec::new()).await.is_err());
    }
}
