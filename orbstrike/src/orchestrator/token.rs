//! Player tokens: who a Play or ExitGame caller is, signed so that any orchestrator can check it.
//!
//! A token binds `(game id, player id, expiry)` under HMAC-SHA256 with a secret every
//! orchestrator shares, so orchestrators stay stateless: a player may join through one replica
//! and play through another. The layout is plain bytes, all integers big-endian:
//!
//! ```text
//! version (1) = 1 | expires_at_ms (8) | player_id (4) | game_id_len (1) | game_id | mac (32)
//! ```
//!
//! The MAC covers every byte before it and is checked in constant time (`Mac::verify_slice`)
//! *before* the expiry is looked at, so a forged token is always "invalid token", never
//! "token expired". Expiry is wall-clock milliseconds since the Unix epoch because the token
//! travels between hosts; clock skew between orchestrators shifts expiry by that skew, which is
//! acceptable for tokens that live for an hour by default.
//!
//! Not done: revocation (a token stays valid until it expires even after ExitGame; the game
//! server no longer knows the player, so it is harmless) and key rotation.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const MAC_LEN: usize = 32;
/// Longest game id a token can carry (the store's id limit).
pub const MAX_GAME_ID_LEN: usize = 128;
/// Shortest accepted secret.
pub const MIN_SECRET_LEN: usize = 16;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub game_id: String,
    pub player_id: u32,
    /// Wall-clock expiry, ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// Why a token was refused. The messages are what players see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, or the signature does not match.
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired { expired_at_ms: u64 },
}

/// Refusal to build a [`TokenKey`] or sign a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("token secret is {len} bytes; it must be at least {MIN_SECRET_LEN} bytes")]
    SecretTooShort { len: usize },
    #[error("game id is {len} bytes; tokens carry at most {MAX_GAME_ID_LEN}")]
    GameIdTooLong { len: usize },
}

/// The shared signing key.
#[derive(Clone)]
pub struct TokenKey {
    /// Keyed once; cloned per use (cheaper than re-keying).
    mac: HmacSha256,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> Result<TokenKey, SignError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SignError::SecretTooShort { len: secret.len() });
        }
        // HMAC accepts keys of any length; the error type exists only for fixed-size MACs.
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| SignError::SecretTooShort { len: secret.len() })?;
        Ok(TokenKey { mac })
    }

    pub fn sign(&self, claims: &Claims) -> Result<Vec<u8>, SignError> {
        let id = claims.game_id.as_bytes();
        let len = u8::try_from(id.len())
            .ok()
            .filter(|l| usize::from(*l) <= MAX_GAME_ID_LEN)
            .ok_or(SignError::GameIdTooLong { len: id.len() })?;
        let mut token = Vec::with_capacity(14 + id.len() + MAC_LEN);
        token.push(VERSION);
        token.extend_from_slice(&claims.expires_at_ms.to_be_bytes());
        token.extend_from_slice(&claims.player_id.to_be_bytes());
        token.push(len);
        token.extend_from_slice(id);
        let mut mac = self.mac.clone();
        mac.update(&token);
        token.extend_from_slice(&mac.finalize().into_bytes());
        Ok(token)
    }

    /// Checks the signature, then the expiry against `now_ms`.
    pub fn verify(&self, token: &[u8], now_ms: u64) -> Result<Claims, TokenError> {
        let body_len = token.len().checked_sub(MAC_LEN).ok_or(TokenError::Invalid)?;
        let (body, tag) = token.split_at(body_len);
        let mut mac = self.mac.clone();
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| TokenError::Invalid)?;
        let claims = decode_body(body).ok_or(TokenError::Invalid)?;
        if now_ms >= claims.expires_at_ms {
            return Err(TokenError::Expired { expired_at_ms: claims.expires_at_ms });
        }
        Ok(claims)
    }
}

fn decode_body(body: &[u8]) -> Option<Claims> {
    let (&version, rest) = body.split_first()?;
    if version != VERSION || rest.len() < 13 {
        return None;
    }
    let (expiry, rest) = rest.split_at(8);
    let (player, rest) = rest.split_at(4);
    let (&len, id) = rest.split_first()?;
    if id.len() != usize::from(len) {
        return None;
    }
    Some(Claims {
        game_id: String::from_utf8(id.to_vec()).ok()?,
        player_id: u32::from_be_bytes(player.try_into().ok()?),
        expires_at_ms: u64::from_be_bytes(expiry.try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(b"0123456789abcdef-shared").unwrap()
    }

    fn claims() -> Claims {
        Claims { game_id: "g-00ff".into(), player_id: 7, expires_at_ms: 10_000 }
    }

    #[test]
    fn a_signed_token_verifies_until_it_expires() {
        let token = key().sign(&claims()).unwrap();
        assert_eq!(key().verify(&token, 9_999).unwrap(), claims());
        assert_eq!(key().verify(&token, 10_000), Err(TokenError::Expired { expired_at_ms: 10_000 }));
        assert_eq!(TokenError::Expired { expired_at_ms: 1 }.to_string(), "token expired");
    }

    #[test]
    fn forged_and_tampered_tokens_are_invalid() {
        let token = key().sign(&claims()).unwrap();
        let other = TokenKey::new(b"another-secret-of-16+").unwrap();
        assert_eq!(other.verify(&token, 0), Err(TokenError::Invalid), "signed with another secret");
        for i in 0..token.len() {
            let mut t = token.clone();
            t[i] ^= 0x01;
            assert_eq!(key().verify(&t, 0), Err(TokenError::Invalid), "byte {i} flipped");
        }
        // An expired forgery is still reported as invalid, not expired.
        let forged = other.sign(&Claims { expires_at_ms: 1, ..claims() }).unwrap();
        assert_eq!(key().verify(&forged, 5), Err(TokenError::Invalid));
        for junk in [&b""[..], b"x", &[0u8; 32], &token[..token.len() - 1]] {
            assert_eq!(key().verify(junk, 0), Err(TokenError::Invalid));
        }
        assert_eq!(TokenError::Invalid.to_string(), "invalid token");
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(TokenKey::new(b"short").unwrap_err(), SignError::SecretTooShort { len: 5 });
        let long = Claims { game_id: "g".repeat(MAX_GAME_ID_LEN + 1), ..claims() };
        assert!(matches!(key().sign(&long), Err(SignError::GameIdTooLong { .. })));
        let max = Claims { game_id: "g".repeat(MAX_GAME_ID_LEN), ..claims() };
        let token = key().sign(&max).unwrap();
        assert_eq!(key().verify(&token, 0).unwrap(), max);
    }
}
