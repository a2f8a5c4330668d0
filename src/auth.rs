//! The site's login carried into the chat: an HS256 JWT in the upgrade request (its
//! `Sec-WebSocket-Protocol`, or `?token=`; `http/upgrade.rs` finds it). Verification is
//! `jsonwebtoken`'s; this module only decides what a valid token means here.

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::AuthConfig;
use crate::identity::Identity;

/// What a token says. `sub` is the site's user id: every connection with the same `sub` is the
/// same user (one name in presence, whispers reach every tab).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    name: Option<String>,
    #[serde(default)]
    rooms: Vec<String>,
}

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn new(cfg: &AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Only HS256: a token cannot pick a weaker algorithm (or "none") for itself.
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub"]);
        // With an audience, a token without `aud` is refused too: it was minted for no one in
        // particular. Without one, jsonwebtoken refuses every token that carries an `aud`.
        if let Some(aud) = &cfg.audience {
            validation.set_audience(&[aud]);
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        }
        validation.leeway = 5;
        Verifier { key: DecodingKey::from_secret(cfg.secret.as_bytes()), validation }
    }

    /// The identity a token carries, or why it is refused (said to the client in the 401).
    pub fn verify(&self, token: &str, max_name_chars: usize) -> Result<Identity, String> {
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => "token expired".to_string(),
                InvalidSignature => "token signature does not match".to_string(),
                InvalidAlgorithm => "token must be signed with HS256".to_string(),
                InvalidAudience if self.validation.aud.is_none() => {
                    "token has an `aud` claim, and this chat accepts none (config `auth.audience` unset)"
                        .to_string()
                }
                InvalidAudience => "token `aud` is not this chat's audience".to_string(),
                MissingRequiredClaim(c) => format!("token lacks the `{c}` claim"),
                _ => format!("malformed token ({e})"),
            }
        })?;
        let c = data.claims;
        if c.sub.is_empty() || c.sub.len() > 256 {
            return Err("token `sub` must be 1 to 256 bytes".into());
        }
        let name = c.name.as_deref().and_then(|n| crate::protocol::clean_name(n, max_name_chars));
        Ok(Identity {
            ip: None,
            user: Some(format!("sub:{}", c.sub)),
            name: Some(name.unwrap_or_else(|| c.sub.clone())),
            bound: true,
            rooms: if c.rooms.is_empty() { None } else { Some(c.rooms) },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn cfg() -> AuthConfig {
        AuthConfig { secret: "0123456789abcdef-secret".into(), required: true, audience: None }
    }

    fn mint(secret: &str, claims: serde_json::Value) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn now() -> u64 {
        crate::clock::now_ms() / 1000
    }

    #[test]
    fn a_valid_token_names_the_user_and_binds_the_name() {
        let v = Verifier::new(&cfg());
        let t = mint(&cfg().secret, serde_json::json!({"sub": "42", "name": "Ada", "exp": now() + 60}));
        let id = v.verify(&t, 32).unwrap();
        assert_eq!(id.user.as_deref(), Some("sub:42"));
        assert_eq!(id.name.as_deref(), Some("Ada"));
        assert!(id.bound);
        assert!(id.rooms.is_none());
    }

    #[test]
    fn forged_expired_and_unsigned_tokens_are_refused() {
        let v = Verifier::new(&cfg());
        let forged = mint("another-secret-of-length", serde_json::json!({"sub": "1", "exp": now() + 60}));
        assert!(v.verify(&forged, 32).unwrap_err().contains("signature"));
        let expired = mint(&cfg().secret, serde_json::json!({"sub": "1", "exp": now() - 3600}));
        assert!(v.verify(&expired, 32).unwrap_err().contains("expired"));
        let no_exp = mint(&cfg().secret, serde_json::json!({"sub": "1"}));
        assert!(v.verify(&no_exp, 32).unwrap_err().contains("exp"));
        // alg "none": header {"alg":"none"}, empty signature.
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(v.verify(none, 32).is_err());
        assert!(v.verify("not a token", 32).is_err());
    }

    #[test]
    fn an_audience_is_required_and_checked_when_configured() {
        let with = AuthConfig { audience: Some("chat.example".into()), ..cfg() };
        let v = Verifier::new(&with);
        let claims = |aud: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "1", "exp": now() + 60});
            if !aud.is_null() {
                c["aud"] = aud;
            }
            mint(&with.secret, c)
        };
        assert!(v.verify(&claims("chat.example".into()), 32).is_ok());
        assert!(v.verify(&claims(serde_json::json!(["other", "chat.example"])), 32).is_ok(), "one of a list");
        assert!(v.verify(&claims("billing.example".into()), 32).unwrap_err().contains("audience"));
        assert!(v.verify(&claims(serde_json::Value::Null), 32).unwrap_err().contains("`aud`"), "missing");

        let without = Verifier::new(&cfg());
        assert!(without.verify(&claims(serde_json::Value::Null), 32).is_ok(), "as before: no aud, no check");
        let e = without.verify(&claims("chat.example".into()), 32).unwrap_err();
        assert!(e.contains("auth.audience"), "a token for a named audience is not taken blindly: {e}");
    }

    #[test]
    fn rooms_claim_limits_rooms() {
        let v = Verifier::new(&cfg());
        let t = mint(&cfg().secret, serde_json::json!({"sub": "7", "rooms": ["a", "b"], "exp": now() + 60}));
        assert_eq!(v.verify(&t, 32).unwrap().rooms, Some(vec!["a".to_string(), "b".to_string()]));
    }
}
