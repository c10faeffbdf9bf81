//! Classifies the first bytes of an outbound TCP flow: mining pool protocol
//! (Stratum v1, XMRig/Monero login, Stratum v2, eth-stratum, web-miner
//! JSON), one of the protocols that prove a flow is *not* a pool connection
//! (HTTP, SSH, database wire protocols, non-mining JSON-RPC), or the start
//! of a layer whose inside decides (a proxy handshake, a WebSocket upgrade,
//! TLS): [`super::stream`] peels those.
//!
//! The kernel peeks at most 256 bytes of a packet, so every check works on a
//! prefix: JSON is never parsed as a document, it is scanned for the
//! `"method"` key and its string value, and a buffer that ends mid-string is
//! classified on what is there (or `Unknown` when that is not enough). Input is
//! arbitrary bytes from the network: nothing here indexes without a bound
//! check, and a property test feeds it random and truncated input.

use serde::{Deserialize, Serialize};

use super::find;

/// What a flow's first bytes speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// Stratum v1 (`mining.subscribe`, `mining.authorize`, `mining.submit`,
    /// …): cpuminer, ccminer, cgminer, bfgminer, SRBMiner, lolMiner.
    StratumV1,
    /// XMRig/Monero pool JSON-RPC: `login` with miner parameters, `submit`
    /// of a share, `keepalived`, `getjob`.
    XmrigLogin,
    /// Stratum v2, unencrypted `SetupConnection` frame.
    StratumV2,
    /// Ethereum-family stratum/getwork (`eth_submitLogin`, `eth_getWork`,
    /// `eth_submitWork`, `eth_submitHashrate`, `EthereumStratum/1.0.0`).
    EthStratum,
    /// The CoinHive-style JSON that browser and Node.js miners speak to
    /// their WebSocket pool proxies: `{"type":"auth","params":{"site_key"…}}`
    /// and `{"type":"submit","params":{"job_id","nonce","result"}}`.
    WebMiner,
    /// TLS ClientHello: the content is hidden, the port and SNI still count.
    Tls,
    Http,
    Ssh,
    Postgres,
    Mysql,
    Redis,
    Mongo,
    /// JSON-RPC that is not mining (`eth_blockNumber`, LSP, bitcoind RPC…).
    OtherJsonRpc,
    /// A SOCKS5 greeting, SOCKS4/4a request or HTTP `CONNECT`: a proxy
    /// flow, whose tunnelled bytes decide.
    Socks5,
    Socks4,
    HttpConnect,
    /// An HTTP request upgrading to WebSocket: the frames decide.
    #[serde(rename = "websocket")]
    WebSocket,
    Unknown,
}

impl Protocol {
    pub const ALL: [Protocol; 18] = [
        Protocol::StratumV1,
        Protocol::XmrigLogin,
        Protocol::StratumV2,
        Protocol::EthStratum,
        Protocol::WebMiner,
        Protocol::Tls,
        Protocol::Http,
        Protocol::Ssh,
        Protocol::Postgres,
        Protocol::Mysql,
        Protocol::Redis,
        Protocol::Mongo,
        Protocol::OtherJsonRpc,
        Protocol::Socks5,
        Protocol::Socks4,
        Protocol::HttpConnect,
        Protocol::WebSocket,
        Protocol::Unknown,
    ];

    /// The kebab-case name, as serialised.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::StratumV1 => "stratum-v1",
            Protocol::XmrigLogin => "xmrig-login",
            Protocol::StratumV2 => "stratum-v2",
            Protocol::EthStratum => "eth-stratum",
            Protocol::WebMiner => "web-miner",
            Protocol::Tls => "tls",
            Protocol::Http => "http",
            Protocol::Ssh => "ssh",
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
            Protocol::Redis => "redis",
            Protocol::Mongo => "mongo",
            Protocol::OtherJsonRpc => "other-json-rpc",
            Protocol::Socks5 => "socks5",
            Protocol::Socks4 => "socks4",
            Protocol::HttpConnect => "http-connect",
            Protocol::WebSocket => "websocket",
            Protocol::Unknown => "unknown",
        }
    }

    /// A mining pool protocol: the strongest signal the detector has.
    pub fn is_mining(self) -> bool {
        matches!(
            self,
            Protocol::StratumV1
                | Protocol::XmrigLogin
                | Protocol::StratumV2
                | Protocol::EthStratum
                | Protocol::WebMiner
        )
    }

    /// The start of a layer (proxy handshake, WebSocket upgrade) whose
    /// inside decides what the flow speaks.
    pub fn is_layer(self) -> bool {
        matches!(
            self,
            Protocol::Socks5 | Protocol::Socks4 | Protocol::HttpConnect | Protocol::WebSocket
        )
    }

    /// A recognised protocol that is not mining and not opaque: a flow that
    /// speaks it is not a pool connection, whatever its port. TLS,
    /// `Unknown` and layers are neither (a pool may sit behind any of them).
    pub fn is_other(self) -> bool {
        !self.is_mining() && !self.is_layer() && !matches!(self, Protocol::Tls | Protocol::Unknown)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Classifies the first bytes a client sent on a new TCP flow.
pub fn classify(bytes: &[u8]) -> Protocol {
    if bytes.is_empty() {
        return Protocol::Unknown;
    }
    if super::tls::is_client_hello(bytes) {
        return Protocol::Tls;
    }
    if prefix_of_or_starts(bytes, b"SSH-", 3) {
        return Protocol::Ssh;
    }
    if let Some(layer) = layer(bytes) {
        return layer;
    }
    if let Some(body) = http_body(bytes) {
        // getwork-style mining over HTTP POST (ethminer `http://`, old
        // cpuminer): the JSON body decides; anything else is plain HTTP.
        let p = classify_json(body);
        return if p.is_mining() { p } else { Protocol::Http };
    }
    if let Some(body) = strip_prefix_ci(bytes, b"content-length:") {
        // LSP-style framing: header, blank line, JSON body.
        let body = find(body, b"\r\n\r\n").map_or(&[][..], |i| &body[i + 4..]);
        let p = classify_json(body);
        return if p.is_mining() {
            p
        } else {
            Protocol::OtherJsonRpc
        };
    }
    let start = skip_ws(bytes, 0);
    if matches!(bytes.get(start), Some(b'{') | Some(b'[')) {
        return classify_json(&bytes[start..]);
    }
    if is_postgres(bytes) {
        return Protocol::Postgres;
    }
    if is_redis(bytes) {
        return Protocol::Redis;
    }
    if is_mongo(bytes) {
        return Protocol::Mongo;
    }
    if is_mysql(bytes) {
        return Protocol::Mysql;
    }
    if is_stratum_v2_setup(bytes) {
        return Protocol::StratumV2;
    }
    Protocol::Unknown
}

/// A proxy handshake or a WebSocket upgrade at the start of `bytes`.
fn layer(bytes: &[u8]) -> Option<Protocol> {
    use super::Parse;
    match bytes.first() {
        Some(5) | Some(4) | Some(b'C') => match super::proxy::parse(bytes) {
            Parse::Done(r, _) | Parse::Partial(r) => Some(match r.kind {
                super::proxy::ProxyKind::Socks5 => Protocol::Socks5,
                super::proxy::ProxyKind::Socks4 | super::proxy::ProxyKind::Socks4a => {
                    Protocol::Socks4
                }
                super::proxy::ProxyKind::HttpConnect => Protocol::HttpConnect,
            }),
            // A greeting alone (`05 01 00`) waits for the proxy's choice.
            Parse::NeedMore if bytes[0] == 5 && bytes.len() >= 3 => Some(Protocol::Socks5),
            _ => None,
        },
        Some(b'G') => matches!(
            super::websocket::upgrade(bytes),
            Parse::Done(..) | Parse::Partial(_)
        )
        .then_some(Protocol::WebSocket),
        _ => None,
    }
}

/// Methods that only mining clients send.
const ETH_METHODS: [&[u8]; 5] = [
    b"eth_submitLogin",
    b"eth_getWork",
    b"eth_submitWork",
    b"eth_submitHashrate",
    b"eth_login",
];

/// Scans a JSON(-ish) buffer: every `"method"` key is looked at, and one
/// mining method is enough (a first packet may carry several requests).
fn classify_json(buf: &[u8]) -> Protocol {
    let mut saw_method = false;
    let mut incomplete = false;
    let mut pos = 0;
    while let Some(m) = next_key(buf, pos, b"method") {
        pos = m.after_colon;
        let Some(value) = string_value(buf, m.after_colon) else {
            // `"method":` then a non-string, or the end of the buffer.
            incomplete |= skip_ws(buf, m.after_colon) >= buf.len();
            continue;
        };
        saw_method = true;
        match method_protocol(buf, value) {
            MethodClass::Mining(p) => return p,
            MethodClass::Incomplete => incomplete = true,
            MethodClass::Other => {}
        }
    }
    if let Some(p) = web_miner(buf) {
        return p;
    }
    let rpc_keys = || {
        [&b"jsonrpc"[..], b"result", b"error"]
            .iter()
            .any(|k| has_key(buf, 0, k))
    };
    if incomplete {
        Protocol::Unknown
    } else if saw_method || (ends_json(buf) && rpc_keys()) {
        // A cut buffer without a method may still hold a mining request.
        Protocol::OtherJsonRpc
    } else {
        Protocol::Unknown
    }
}

/// CoinHive-style web-miner messages: `"type":"auth"` with a `site_key`,
/// or `"type":"submit"` with the share's `job_id`, `nonce` and `result`.
fn web_miner(buf: &[u8]) -> Option<Protocol> {
    let ty = next_key(buf, 0, b"type").and_then(|k| string_value(buf, k.after_colon))?;
    let params = next_key(buf, 0, b"params")?.after_colon;
    let mining = match ty.text {
        b"auth" => has_key(buf, params, b"site_key"),
        b"submit" => {
            has_key(buf, params, b"job_id")
                && has_key(buf, params, b"nonce")
                && has_key(buf, params, b"result")
        }
        _ => false,
    };
    mining.then_some(Protocol::WebMiner)
}

enum MethodClass {
    Mining(Protocol),
    /// The value was cut by the end of the buffer before it could decide.
    Incomplete,
    Other,
}

fn method_protocol(buf: &[u8], value: StrValue<'_>) -> MethodClass {
    let name = value.text;
    if name.starts_with(b"mining.") {
        // Ethash pools speak stratum v1 method names with a marker
        // (`EthereumStratum/1.0.0` in mining.subscribe, NiceHash style).
        let eth = find(buf, b"EthereumStratum").is_some();
        return MethodClass::Mining(if eth {
            Protocol::EthStratum
        } else {
            Protocol::StratumV1
        });
    }
    if !value.complete {
        let could_be = |full: &[u8]| full.starts_with(name);
        let mining_prefix = b"mining.".starts_with(name)
            || ETH_METHODS.iter().any(|m| could_be(m))
            || [&b"login"[..], b"submit", b"keepalived", b"getjob"]
                .iter()
                .any(|m| could_be(m));
        return if mining_prefix {
            MethodClass::Incomplete
        } else {
            MethodClass::Other
        };
    }
    if ETH_METHODS.contains(&name) {
        return MethodClass::Mining(Protocol::EthStratum);
    }
    let params = next_key(buf, 0, b"params").map(|k| k.after_colon);
    let xmrig = match name {
        // XMRig: {"method":"login","params":{"login":WALLET,"pass":"x",
        // "agent":"XMRig/6.x ...","algo":[...],"rigid":""}}. A generic login
        // (user/password, or login/pass to an application) has none of the
        // miner keys: `pass` alone is every password form's field name, and
        // a kill must not rest on it.
        b"login" => {
            let miner_keys = [&b"agent"[..], b"algo", b"rigid"]
                .iter()
                .any(|k| has_key(buf, 0, k));
            let wallet_login = next_key(buf, 0, b"login")
                .and_then(|k| string_value(buf, k.after_colon))
                .is_some_and(|v| looks_like_monero_wallet_prefix(v.text, v.complete));
            miner_keys || wallet_login
        }
        // Share submission: {"method":"submit","params":{"id":SESSION,
        // "job_id":..,"nonce":..,"result":HASH}}.
        b"submit" => {
            has_key(buf, 0, b"job_id") && (has_key(buf, 0, b"nonce") || has_key(buf, 0, b"result"))
        }
        // Session keepalive and job refresh carry the pool session id.
        b"keepalived" | b"getjob" => params.is_some_and(|p| has_key(buf, p, b"id")),
        _ => false,
    };
    if xmrig {
        MethodClass::Mining(Protocol::XmrigLogin)
    } else if matches!(name, b"login" | b"submit" | b"keepalived" | b"getjob") && !ends_json(buf) {
        // The miner keys live in params, which the peek may have cut off.
        MethodClass::Incomplete
    } else {
        MethodClass::Other
    }
}

/// A Monero address (standard `4…`, subaddress `8…`, 95 base58 chars;
/// integrated 106), optionally followed by `.worker` or `+difficulty`, or a
/// prefix of one when the buffer was cut.
fn looks_like_monero_wallet_prefix(text: &[u8], complete: bool) -> bool {
    let end = text
        .iter()
        .position(|&c| matches!(c, b'.' | b'+' | b'/'))
        .unwrap_or(text.len());
    let addr = &text[..end];
    if !matches!(addr.first(), Some(b'4') | Some(b'8')) || !addr.iter().all(|&c| is_base58(c)) {
        return false;
    }
    if complete || end < text.len() {
        addr.len() == 95 || addr.len() == 106
    } else {
        addr.len() >= 32 && addr.len() <= 106
    }
}

pub(crate) fn is_base58(c: u8) -> bool {
    c.is_ascii_alphanumeric() && !matches!(c, b'0' | b'O' | b'I' | b'l')
}

/// The buffer holds a whole JSON message (it ends with `}` or `]`, modulo
/// trailing whitespace).
fn ends_json(buf: &[u8]) -> bool {
    buf.iter()
        .rev()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|&c| c == b'}' || c == b']')
}

struct KeyHit {
    after_colon: usize,
}

/// Next `"name"` used as an object key (followed by optional whitespace and
/// a colon) at or after `from`.
fn next_key(buf: &[u8], from: usize, name: &[u8]) -> Option<KeyHit> {
    let mut pos = from;
    while pos < buf.len() {
        let rel = find_quoted(&buf[pos..], name)?;
        let key_start = pos + rel;
        let after = key_start + name.len() + 2;
        let colon = skip_ws(buf, after);
        if buf.get(colon) == Some(&b':') {
            return Some(KeyHit {
                after_colon: colon + 1,
            });
        }
        pos = key_start + 1;
    }
    None
}

fn has_key(buf: &[u8], from: usize, name: &[u8]) -> bool {
    next_key(buf, from, name).is_some()
}

/// Position of `"name"` in `hay`.
fn find_quoted(hay: &[u8], name: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < hay.len() {
        let rel = hay[i..].iter().position(|&c| c == b'"')?;
        let q = i + rel;
        let body = q + 1;
        if hay.len() > body + name.len()
            && &hay[body..body + name.len()] == name
            && hay[body + name.len()] == b'"'
        {
            return Some(q);
        }
        i = q + 1;
    }
    None
}

struct StrValue<'a> {
    text: &'a [u8],
    /// The closing quote was inside the buffer.
    complete: bool,
}

/// The JSON string starting (after whitespace) at `at`, if there is one.
fn string_value(buf: &[u8], at: usize) -> Option<StrValue<'_>> {
    let q = skip_ws(buf, at);
    if buf.get(q) != Some(&b'"') {
        return None;
    }
    let start = q + 1;
    let mut i = start;
    while i < buf.len() {
        match buf[i] {
            b'\\' => i += 2,
            b'"' => {
                return Some(StrValue {
                    text: &buf[start..i],
                    complete: true,
                });
            }
            _ => i += 1,
        }
    }
    Some(StrValue {
        text: &buf[start.min(buf.len())..],
        complete: false,
    })
}

fn skip_ws(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && buf[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn strip_prefix_ci<'a>(bytes: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &bytes[prefix.len()..])
}

/// `bytes` starts with `pat`, or is a prefix of it at least `min` long
/// (the peek cut it).
fn prefix_of_or_starts(bytes: &[u8], pat: &[u8], min: usize) -> bool {
    if bytes.len() >= pat.len() {
        bytes.starts_with(pat)
    } else {
        bytes.len() >= min && pat.starts_with(bytes)
    }
}

const HTTP_METHODS: [&[u8]; 10] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI * HTTP/2",
];

/// HTTP request (or the HTTP/2 preface): returns the body after the
/// headers (empty when not in the buffer).
fn http_body(b: &[u8]) -> Option<&[u8]> {
    let is_http =
        HTTP_METHODS.iter().any(|m| prefix_of_or_starts(b, m, 4)) || b.starts_with(b"HTTP/");
    if !is_http {
        return None;
    }
    Some(find(b, b"\r\n\r\n").map_or(&[][..], |i| &b[i + 4..]))
}

/// PostgreSQL StartupMessage, SSLRequest, GSSENCRequest or CancelRequest:
/// int32 length (big endian) then a protocol code.
fn is_postgres(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let code = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
    (8..=10_000).contains(&len)
        && matches!(code, 0x0003_0000 | 80_877_102 | 80_877_103 | 80_877_104)
}

/// Redis RESP array (`*N\r\n$…`), the form every client library sends.
fn is_redis(b: &[u8]) -> bool {
    if b.first() != Some(&b'*') {
        return false;
    }
    let digits = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let rest = &b[1 + digits..];
    rest.is_empty() || rest.starts_with(b"\r\n") || rest == b"\r"
}

/// MongoDB wire message: int32 length, requestID, responseTo = 0, opCode
/// OP_MSG (2013), OP_QUERY (2004) or OP_COMPRESSED (2012), little endian.
fn is_mongo(b: &[u8]) -> bool {
    if b.len() < 16 {
        return false;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let response_to = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
    let op = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    (16..=48_000_000).contains(&len) && response_to == 0 && matches!(op, 2004 | 2012 | 2013)
}

/// MySQL client HandshakeResponse41 or SSLRequest: 3-byte length, sequence
/// id 1, capability flags with CLIENT_PROTOCOL_41.
fn is_mysql(b: &[u8]) -> bool {
    if b.len() < 8 {
        return false;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], 0]);
    let caps = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    b[3] == 1 && (32..=4096).contains(&len) && caps & 0x0200 != 0
}

/// Stratum v2 `SetupConnection`, unencrypted: a 6-byte frame header
/// (extension_type u16 LE = 0, msg_type u8 = 0x00, msg_length u24 LE), then
/// protocol u8 (0 mining, 1 job declaration), min_version u16 LE,
/// max_version u16 LE, flags u32 LE, endpoint_host STR0_255, …
///
/// Every field visible in the buffer must be plausible; at least the
/// header, protocol and versions must be there.
fn is_stratum_v2_setup(b: &[u8]) -> bool {
    if b.len() < 11 {
        return false;
    }
    let ext = u16::from_le_bytes([b[0], b[1]]);
    let msg_type = b[2];
    let len = u32::from_le_bytes([b[3], b[4], b[5], 0]) as usize;
    // Fixed part: protocol 1 + versions 4 + flags 4 + five STR0_255 length
    // bytes + port 2 = 16; five strings of at most 255 bytes.
    if ext != 0 || msg_type != 0x00 || !(16..=16 + 5 * 255).contains(&len) {
        return false;
    }
    let p = &b[6..];
    let protocol = p[0];
    let min_v = u16::from_le_bytes([p[1], p[2]]);
    let max_v = u16::from_le_bytes([p[3], p[4]]);
    if protocol > 1 || !(1..=2).contains(&min_v) || max_v < min_v || !(2..=16).contains(&max_v) {
        return false;
    }
    if p.len() >= 9 {
        let flags = u32::from_le_bytes([p[5], p[6], p[7], p[8]]);
        if flags > 0xff {
            return false;
        }
    }
    if let Some(&host_len) = p.get(9) {
        let host_len = usize::from(host_len);
        if 16 + host_len > len {
            return false;
        }
        let host = &p[10..p.len().min(10 + host_len)];
        if !host.iter().all(|&c| c.is_ascii_graphic()) {
            return false;
        }
    }
    true
}

/// The server name a TLS ClientHello asks for, when the SNI extension is
/// entirely inside the buffer.
pub fn tls_sni(b: &[u8]) -> Option<String> {
    super::tls::client_hello(b)?.sni
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const XMRIG_LOGIN: &[u8] = br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A","pass":"x","agent":"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0","rigid":"","algo":["rx/0","cn/1","cn/2","cn/r","cn/fast","cn/half","cn/xao","cn/rto","cn/rwz","cn/zls","cn/double","cn/ccx","cn-lite/1","cn-heavy/0","cn-heavy/tube","cn-heavy/xhv","cn-pico","cn-pico/tlo","cn/upx2","rx/wow","rx/arq","rx/graft","rx/sfx","rx/yada","argon2/chukwa","argon2/chukwav2","argon2/ninja","ghostrider"]}}"#;

    /// A TLS 1.3 ClientHello naming `sni` (the classifier's TLS case).
    fn client_hello(sni: &str) -> Vec<u8> {
        use super::super::tls::tests::{hello, sni_ext};
        hello(&[0x1301, 0x1302], &[sni_ext(sni)])
    }

    fn sv2_setup_connection(protocol: u8, host: &str) -> Vec<u8> {
        let mut p = vec![protocol];
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(host.len() as u8);
        p.extend_from_slice(host.as_bytes());
        p.extend_from_slice(&34255u16.to_le_bytes());
        for s in ["Bitmain", "S19", "1.0", "dev-1"] {
            p.push(s.len() as u8);
            p.extend_from_slice(s.as_bytes());
        }
        let mut f = vec![0x00, 0x00, 0x00];
        f.extend_from_slice(&(p.len() as u32).to_le_bytes()[..3]);
        f.extend_from_slice(&p);
        f
    }

    fn cases() -> Vec<(&'static str, Vec<u8>, Protocol)> {
        use Protocol::*;
        let s = |x: &str| x.as_bytes().to_vec();
        vec![
            ("xmrig login", XMRIG_LOGIN.to_vec(), XmrigLogin),
            (
                "xmrig login cut at 256",
                XMRIG_LOGIN[..256].to_vec(),
                XmrigLogin,
            ),
            (
                "xmrig login, other field order, spaces",
                s(
                    r#"{ "params" : { "agent" : "xmrig-proxy/6.0", "login" : "x" , "pass":"x"}, "method" : "login", "id" : 1 }"#,
                ),
                XmrigLogin,
            ),
            (
                "xmrig login cut inside the wallet",
                s(
                    r#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7o"#,
                ),
                XmrigLogin,
            ),
            (
                "xmrig submit",
                s(
                    r#"{"id":4,"jsonrpc":"2.0","method":"submit","params":{"id":"a7b3c1d2","job_id":"Zk3f","nonce":"1b0e0000","result":"f2c9ab00e1"}}"#,
                ),
                XmrigLogin,
            ),
            (
                "xmrig keepalived",
                s(r#"{"id":9,"jsonrpc":"2.0","method":"keepalived","params":{"id":"a7b3c1d2"}}"#),
                XmrigLogin,
            ),
            (
                "xmrig getjob",
                s(r#"{"id":3,"method":"getjob","params":{"id":"a7b3c1d2"}}"#),
                XmrigLogin,
            ),
            (
                "cpuminer subscribe",
                s(
                    "{\"id\": 1, \"method\": \"mining.subscribe\", \"params\": [\"cpuminer-opt/3.23.3\"]}\n",
                ),
                StratumV1,
            ),
            (
                "subscribe + authorize in one packet",
                s(
                    "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"cgminer/4.12.1\"]}\n{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"user.w1\",\"x\"]}\n",
                ),
                StratumV1,
            ),
            (
                "authorize",
                s(r#"{"params": ["bc1qwallet.rig1", "x"], "id": 2, "method": "mining.authorize"}"#),
                StratumV1,
            ),
            (
                "submit",
                s(
                    r#"{"params":["w.1","bf","00000000","5f5e1000","a1b2c3d4"],"id":4,"method":"mining.submit"}"#,
                ),
                StratumV1,
            ),
            (
                "extranonce",
                s(r#"{"id":3,"method":"mining.extranonce.subscribe","params":[]}"#),
                StratumV1,
            ),
            (
                "configure",
                s(
                    r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"1fffe000"}]}"#,
                ),
                StratumV1,
            ),
            (
                "suggest_difficulty",
                s(r#"{"id":5,"method":"mining.suggest_difficulty","params":[512]}"#),
                StratumV1,
            ),
            (
                "method cut after prefix",
                s(r#"{"id":1,"method":"mining.sub"#),
                StratumV1,
            ),
            (
                "nicehash ethereum stratum",
                s(
                    r#"{"id":1,"method":"mining.subscribe","params":["ethminer/0.19.0","EthereumStratum/1.0.0"]}"#,
                ),
                EthStratum,
            ),
            (
                "eth_submitLogin",
                s(
                    r#"{"id":1,"jsonrpc":"2.0","method":"eth_submitLogin","params":["0x5f2d2a1b9c7e4d3f8a6b0c1d2e3f4a5b6c7d8e9f"],"worker":"rig"}"#,
                ),
                EthStratum,
            ),
            (
                "eth_getWork",
                s(r#"{"id":5,"jsonrpc":"2.0","method":"eth_getWork","params":[]}"#),
                EthStratum,
            ),
            (
                "eth_submitWork",
                s(
                    r#"{"id":4,"method":"eth_submitWork","params":["0x0000000000000001","0xab","0xcd"]}"#,
                ),
                EthStratum,
            ),
            (
                "eth_submitHashrate",
                s(
                    r#"{"id":9,"jsonrpc":"2.0","method":"eth_submitHashrate","params":["0x1","0x2"]}"#,
                ),
                EthStratum,
            ),
            (
                "getwork over http",
                s(
                    "POST / HTTP/1.1\r\nHost: pool:8008\r\nContent-Type: application/json\r\n\r\n{\"id\":1,\"method\":\"eth_getWork\",\"params\":[]}",
                ),
                EthStratum,
            ),
            (
                "stratum v2 setup connection",
                sv2_setup_connection(0, "pool.example.com"),
                StratumV2,
            ),
            (
                "stratum v2 cut after versions",
                sv2_setup_connection(0, "pool.example.com")[..11].to_vec(),
                StratumV2,
            ),
            // Benign look-alikes.
            (
                "stratum v2 template distribution",
                sv2_setup_connection(2, "tp.example"),
                Unknown,
            ),
            ("tls client hello", client_hello("pool.supportxmr.com"), Tls),
            ("tls cut after header", vec![0x16, 0x03, 0x01, 0x02], Tls),
            (
                "tls server alert is not a hello",
                vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28],
                Unknown,
            ),
            (
                "http get",
                s("GET /api/v1/stats HTTP/1.1\r\nHost: pool:3333\r\n\r\n"),
                Http,
            ),
            (
                "http post json-rpc, not mining",
                s("POST / HTTP/1.1\r\n\r\n{\"method\":\"getblockchaininfo\"}"),
                Http,
            ),
            (
                "http connect tunnel",
                s("CONNECT pool.example:3333 HTTP/1.1\r\n\r\n"),
                HttpConnect,
            ),
            ("socks5 greeting", vec![5, 1, 0], Socks5),
            (
                "socks5 request",
                vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0x0d, 0x05],
                Socks5,
            ),
            (
                "socks4 request",
                vec![4, 1, 0x0d, 0x05, 10, 0, 0, 1, 0],
                Socks4,
            ),
            (
                "websocket upgrade",
                s(
                    "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                ),
                WebSocket,
            ),
            (
                "web miner auth",
                s(
                    r#"{"type":"auth","params":{"site_key":"Xk3Lr9","type":"anonymous","user":null,"goal":0}}"#,
                ),
                WebMiner,
            ),
            (
                "web miner submit",
                s(
                    r#"{"type":"submit","params":{"version":7,"job_id":"3f9a","nonce":"0b1c2d3e","result":"f2c9ab00e1"}}"#,
                ),
                WebMiner,
            ),
            (
                "chat message with a type is not mining",
                s(r#"{"type":"submit","params":{"form":"contact","text":"hi"}}"#),
                Unknown,
            ),
            (
                "http/2 preface",
                s("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
                Http,
            ),
            (
                "ssh banner",
                s("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"),
                Ssh,
            ),
            (
                "postgres startup",
                [
                    &[0u8, 0, 0, 0x29, 0, 3, 0, 0][..],
                    b"user\0app\0database\0app\0\0",
                ]
                .concat(),
                Postgres,
            ),
            (
                "postgres ssl request",
                vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
                Postgres,
            ),
            ("redis resp", s("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"), Redis),
            (
                "mongo op_msg",
                [
                    &[0x3a, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0x07, 0, 0][..],
                    &[0u8; 8][..],
                ]
                .concat(),
                Mongo,
            ),
            (
                "mysql handshake response",
                [&[0x55, 0, 0, 1, 0x0d, 0xa2, 0x3e, 0x00][..], &[0u8; 24][..]].concat(),
                Mysql,
            ),
            (
                "eth json-rpc, not mining",
                s(r#"{"jsonrpc":"2.0","method":"eth_blockNumber","params":[],"id":1}"#),
                OtherJsonRpc,
            ),
            (
                "bitcoind rpc",
                s(r#"{"jsonrpc":"1.0","id":"curl","method":"getblockchaininfo","params":[]}"#),
                OtherJsonRpc,
            ),
            (
                "bitcoind getblocktemplate (pool server side)",
                s(r#"{"id":0,"method":"getblocktemplate","params":[{"rules":["segwit"]}]}"#),
                OtherJsonRpc,
            ),
            (
                "lsp initialize",
                s(
                    "Content-Length: 52\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\"}",
                ),
                OtherJsonRpc,
            ),
            (
                "generic login is not xmrig",
                s(
                    r#"{"jsonrpc":"2.0","id":7,"method":"login","params":{"user":"bob","password":"hunter2"}}"#,
                ),
                OtherJsonRpc,
            ),
            (
                "application login with a pass field is not xmrig",
                s(
                    r#"{"jsonrpc":"2.0","id":1,"method":"login","params":{"username":"alice","pass":"hunter2"}}"#,
                ),
                OtherJsonRpc,
            ),
            (
                "login/pass without a wallet or miner keys is not xmrig",
                s(
                    r#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"admin","pass":"s3cret"}}"#,
                ),
                OtherJsonRpc,
            ),
            (
                "generic submit is not a share",
                s(r#"{"id":1,"method":"submit","params":{"form":"a"}}"#),
                OtherJsonRpc,
            ),
            (
                "json-rpc response",
                s(r#"{"id":1,"jsonrpc":"2.0","result":{"status":"OK"}}"#),
                OtherJsonRpc,
            ),
            (
                "method name in a string value",
                s(r#"{"log":"\"method\":\"mining.subscribe\"","level":"info"}"#),
                Unknown,
            ),
            ("plain json", s(r#"{"name":"x","values":[1,2,3]}"#), Unknown),
            ("binary", vec![0x00, 0x01, 0x02, 0xff, 0xfe], Unknown),
            ("empty", vec![], Unknown),
        ]
    }

    #[test]
    fn classifies_first_payload_bytes() {
        for (name, bytes, want) in cases() {
            assert_eq!(classify(&bytes), want, "case: {name}");
        }
    }

    #[test]
    fn mining_protocols_survive_truncation_or_become_unknown() {
        // Cut anywhere, a mining request never turns into a benign class:
        // a truncated pool login must not retract a pool-port signal.
        for (name, bytes, want) in cases() {
            if !want.is_mining() {
                continue;
            }
            for cut in 0..bytes.len() {
                let got = classify(&bytes[..cut]);
                assert!(
                    got.is_mining()
                        || matches!(got, Protocol::Unknown | Protocol::Http | Protocol::Tls),
                    "case {name} cut at {cut}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn reads_sni_from_client_hello() {
        assert_eq!(
            tls_sni(&client_hello("Pool.SupportXMR.com")).as_deref(),
            Some("pool.supportxmr.com")
        );
        let hello = client_hello("gulf.moneroocean.stream");
        assert_eq!(
            tls_sni(&hello[..hello.len() - 3]),
            None,
            "cut inside the name"
        );
        assert_eq!(tls_sni(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn serde_names_are_kebab_case() {
        for p in Protocol::ALL {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = classify(&bytes);
            let _ = tls_sni(&bytes);
        }

        #[test]
        fn never_panics_on_json_like_bytes(s in r#"[\{\}\[\]":, a-z.\\_0-9]{0,120}"#) {
            let _ = classify(s.as_bytes());
        }

        #[test]
        fn never_panics_on_truncated_requests(idx in 0usize..64, cut in 0usize..400) {
            let all = cases();
            let (_, bytes, _) = &all[idx % all.len()];
            let cut = cut.min(bytes.len());
            let _ = classify(&bytes[..cut]);
            let _ = tls_sni(&bytes[..cut]);
        }
    }
}
