//! Who may do what: tokens with roles, as `mercato serve --tokens-file`
//! reads them, and the role each request needs.
//!
//! Three roles, each holding the one below it:
//! - `reader`: reads (SKUs, accounts, orders, locks, sagas, the cache,
//!   `Info`) and the change feed;
//! - `trader`: also places, pays and cancels orders, writes the cache, and
//!   takes locks and runs sagas;
//! - `admin`: also the catalogue and stock, deposits, withdrawals and
//!   refunds, and dropping the feed's durable subscriptions.
//!
//! A server without tokens lets every connection act as `admin`, as Redis
//! without `requirepass` does; `--auth-token` alone is one `admin` token.
//!
//! A tokens file may give a token as `sha256:HEX`, the SHA-256 of the
//! token in 64 hex digits (`printf %s "$TOKEN" | sha256sum`), so the file
//! need not hold the token itself, as PostgreSQL keeps SCRAM verifiers
//! and not passwords. The server keeps every token only as its digest and
//! compares digests.

use mercato_protocol as wire;

/// What a token lets its connection do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Reader,
    Trader,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Trader => "trader",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "trader" => Some(Role::Trader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn to_wire(self) -> wire::Role {
        match self {
            Role::Reader => wire::Role::Reader,
            Role::Trader => wire::Role::Trader,
            Role::Admin => wire::Role::Admin,
        }
    }
}

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokensError {
    #[error("line {line}: expected `ROLE TOKEN`, ROLE one of admin, trader, reader")]
    Malformed { line: usize },
    #[error("line {line}: a token of {len} bytes; at least {min}")]
    TooShort { line: usize, len: usize, min: usize },
    #[error("line {line}: the same token as line {first}")]
    Repeated { line: usize, first: usize },
    #[error("line {line}: `sha256:` needs 64 hex digits after it")]
    BadDigest { line: usize },
}

/// A token's SHA-256.
type Digest = [u8; 32];

fn digest(token: &[u8]) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(token).into()
}

/// `sha256:` and 64 hex digits, as a digest.
fn parse_digest(hex: &str) -> Option<Digest> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Tokens shorter than this are refused: a guessable token is no lock.
pub const TOKEN_BYTES_MIN: usize = 16;

/// The tokens a server accepts, each with its role, kept as digests.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    list: Vec<(Role, Digest)>,
}

impl Tokens {
    /// One `ROLE TOKEN` or `ROLE sha256:HEX` per line; blank lines and
    /// lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut list: Vec<(Role, Digest, usize)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut parts = l.split_whitespace();
            let (Some(role), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(TokensError::Malformed { line });
            };
            let role = Role::parse(role).ok_or(TokensError::Malformed { line })?;
            let d = match token.strip_prefix("sha256:") {
                Some(hex) => parse_digest(hex).ok_or(TokensError::BadDigest { line })?,
                None if token.len() < TOKEN_BYTES_MIN => {
                    return Err(TokensError::TooShort {
                        line,
                        len: token.len(),
                        min: TOKEN_BYTES_MIN,
                    });
                }
                None => digest(token.as_bytes()),
            };
            if let Some(&(_, _, first)) = list.iter().find(|(_, t, _)| *t == d) {
                return Err(TokensError::Repeated { line, first });
            }
            list.push((role, d, line));
        }
        Ok(Tokens {
            list: list.into_iter().map(|(r, t, _)| (r, t)).collect(),
        })
    }

    /// One token with the `admin` role (`--auth-token`).
    pub fn admin(token: &str) -> Tokens {
        Tokens {
            list: vec![(Role::Admin, digest(token.as_bytes()))],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn add(&mut self, other: Tokens) {
        self.list.extend(other.list);
    }

    /// The role of `given`, if it is one of the tokens. Its digest is
    /// compared with every token's, each comparison reading all 32 bytes,
    /// so the time taken tells nothing of which token or bytes matched.
    pub fn role_of(&self, given: Option<&str>) -> Option<Role> {
        let given = digest(given?.as_bytes());
        let mut found = None;
        for (role, token) in &self.list {
            if equal_in_constant_time(token, &given) {
                found = Some(*role);
            }
        }
        found
    }
}

/// Compares every byte of the longer input, whatever differs where.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    // Keep the compiler from ending the loop at the first difference.
    std::hint::black_box(diff) == 0
}

/// The least role that may send `r`.
pub fn needs(r: &wire::Request) -> Role {
    use wire::Request as R;
    match r {
        R::GetSku { .. }
        | R::GetAccount { .. }
        | R::GetOrder { .. }
        | R::ListOrders { .. }
        | R::CacheGet { .. }
        | R::CacheStats
        | R::Info
        | R::LockInspect { .. }
        | R::SagaGet { .. }
        | R::SagaList { .. }
        | R::Subscribe { .. }
        | R::FeedAck { .. }
        | R::Unsubscribe
        | R::SubscriptionList => Role::Reader,
        R::PlaceOrder { .. }
        | R::Pay { .. }
        | R::Cancel { .. }
        | R::CacheSet { .. }
        | R::CacheDel { .. }
        | R::LockAcquire { .. }
        | R::LockRenew { .. }
        | R::LockRelease { .. }
        | R::LockCancel { .. }
        | R::SagaBegin { .. }
        | R::SagaStep { .. }
        | R::SagaAbort { .. }
        | R::SagaEnd { .. } => Role::Trader,
        R::PutSku { .. }
        | R::Restock { .. }
        | R::Deposit { .. }
        | R::Withdraw { .. }
        | R::Refund { .. }
        | R::SubscriptionDrop { .. } => Role::Admin,
        // A fenced write needs what the write needs.
        R::Fenced { write, .. } => match write.as_ref() {
            wire::FencedWrite::PlaceOrder { .. }
            | wire::FencedWrite::Pay { .. }
            | wire::FencedWrite::Cancel { .. }
            | wire::FencedWrite::CacheSet { .. } => Role::Trader,
            wire::FencedWrite::PutSku { .. }
            | wire::FencedWrite::Restock { .. }
            | wire::FencedWrite::Deposit { .. }
            | wire::FencedWrite::Withdraw { .. }
            | wire::FencedWrite::Refund { .. } => Role::Admin,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "admin-token-0123456789";
    const T: &str = "trader-token-0123456789";

    #[test]
    fn a_tokens_file_gives_each_token_its_role() {
        let text = format!("# roles\n\nadmin {A}\ntrader   {T}\n");
        let t = Tokens::parse(&text).unwrap();
        assert_eq!(t.role_of(Some(A)), Some(Role::Admin));
        assert_eq!(t.role_of(Some(T)), Some(Role::Trader));
        assert_eq!(t.role_of(Some("trader-token-012345678")), None);
        assert_eq!(t.role_of(Some("trader-token-01234567890")), None);
        assert_eq!(t.role_of(None), None);
    }

    #[test]
    fn a_bad_tokens_file_is_refused_with_its_line() {
        assert_eq!(
            Tokens::parse(&format!("root {A}")).unwrap_err(),
            TokensError::Malformed { line: 1 }
        );
        assert_eq!(
            Tokens::parse("\nreader short").unwrap_err(),
            TokensError::TooShort {
                line: 2,
                len: 5,
                min: TOKEN_BYTES_MIN
            }
        );
        assert_eq!(
            Tokens::parse(&format!("admin {A}\nreader {A}")).unwrap_err(),
            TokensError::Repeated { line: 2, first: 1 }
        );
        assert_eq!(
            Tokens::parse(&format!("admin {A} extra")).unwrap_err(),
            TokensError::Malformed { line: 1 }
        );
    }

    #[test]
    fn a_token_may_be_given_by_its_sha256() {
        // SHA-256("abc"), FIPS 180-2's first example, in upper case.
        let abc = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(digest(b"abc"), parse_digest(abc).unwrap());
        let hashed: String = digest(T.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let t = Tokens::parse(&format!("admin {A}\ntrader sha256:{hashed}")).unwrap();
        assert_eq!(t.role_of(Some(T)), Some(Role::Trader));
        // The digest is not a token that works.
        assert_eq!(t.role_of(Some(&format!("sha256:{hashed}"))), None);
        assert_eq!(
            Tokens::parse(&format!("trader sha256:{}", &hashed[1..])).unwrap_err(),
            TokensError::BadDigest { line: 1 }
        );
        assert_eq!(
            Tokens::parse(&format!("trader sha256:{}g", &hashed[1..])).unwrap_err(),
            TokensError::BadDigest { line: 1 }
        );
        // A token given both ways is one token twice.
        assert_eq!(
            Tokens::parse(&format!("trader {T}\nadmin sha256:{hashed}")).unwrap_err(),
            TokensError::Repeated { line: 2, first: 1 }
        );
    }

    #[test]
    fn comparing_tokens_looks_at_every_byte() {
        assert!(equal_in_constant_time(b"abc", b"abc"));
        assert!(!equal_in_constant_time(b"abc", b"abd"));
        assert!(!equal_in_constant_time(b"abc", b"abcd"));
        assert!(!equal_in_constant_time(b"", b"a"));
        assert!(equal_in_constant_time(b"", b""));
    }
}
