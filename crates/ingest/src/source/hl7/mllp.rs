//! MLLP, the framing HL7 v2 interfaces speak over TCP: `0x0B message 0x1C 0x0D`, answered by an
//! ACK (`MSA|AA`) once the message is safely stored, or a NACK (`MSA|AE` when it could not be
//! stored, `MSA|AR` when it is not a parseable HL7 message) so the sending interface engine
//! retries or alerts rather than losing it.

use std::sync::Arc;

use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::parse::Message;

const START: u8 = 0x0b;
const END: [u8; 2] = [0x1c, 0x0d];
/// Larger frames are refused and the connection closed (a runaway sender, not a message).
pub const MAX_FRAME: usize = 16 << 20;

/// Stores one received message; `Err` becomes a NACK with the reason.
pub type Handler = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Accepts connections until the listener fails; each connection is served on its own task.
pub async fn serve(listener: TcpListener, handler: Handler) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handler).await {
                tracing::warn!(%peer, "MLLP connection ended: {e}");
            }
        });
    }
}

async fn connection(mut stream: TcpStream, handler: Handler) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == END) {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let body = &frame[..end];
            let body = body.strip_prefix(&[START]).unwrap_or(body);
            let reply = answer(body, &handler);
            stream.write_all(&frame_bytes(&reply)).await?;
        }
        if buf.len() > MAX_FRAME {
            return Err(std::io::Error::other("frame larger than 16 MiB"));
        }
    }
}

/// The ACK/NACK for one framed message.
pub fn answer(body: &[u8], handler: &Handler) -> String {
    let text = super::decode(body);
    match Message::parse(&text) {
        Err(e) => ack(None, "AR", Some(&e.to_string())),
        Ok(m) => match handler(&text) {
            Ok(()) => ack(Some(&m), "AA", None),
            Err(reason) => ack(Some(&m), "AE", Some(&reason)),
        },
    }
}

/// Wraps a message in MLLP framing.
pub fn frame_bytes(message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&END);
    out
}

/// An ACK for `m` (or for an unreadable message) with acknowledgement code `code`.
pub fn ack(m: Option<&Message>, code: &str, error: Option<&str>) -> String {
    let msh = m.and_then(|m| m.segment("MSH"));
    let get = |n: usize| msh.map(|s| s.raw(n).to_string()).unwrap_or_default();
    let control = m.map(Message::control_id).unwrap_or_default();
    let now = Utc::now().format("%Y%m%d%H%M%S");
    // Sender and receiver swap places; the ACK answers with the version it was spoken to in.
    let version = Some(get(12))
        .filter(|v| !v.is_empty())
        .unwrap_or("2.5".into());
    let mut out = format!(
        "MSH|^~\\&|{}|{}|{}|{}|{now}||ACK^{}^ACK|ACK{control}|P|{version}\rMSA|{code}|{control}",
        get(5),
        get(6),
        get(3),
        get(4),
        m.map(|m| m.kind().1).unwrap_or_default(),
    );
    if let Some(e) = error {
        // Field separators in the reason would break the segment.
        let e: String = e
            .chars()
            .map(|c| if "|^~\\&\r\n".contains(c) { ' ' } else { c })
            .collect();
        out.push_str(&format!(
            "\rERR|||207^Application internal error^HL70357|E||||{e}"
        ));
    }
    out.push('\r');
    out
}
