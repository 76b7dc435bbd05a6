//! A dashboard user's password as the users file holds it: an Argon2 hash in PHC form
//! (`$argon2id$v=19$...`, made by `hubspot-outbox hash-password`), so a copy of the file
//! (a backup, a leaked image) does not give the passwords away; or, still accepted, the
//! password itself.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use subtle::ConstantTimeEq;

/// The shortest password accepted, in characters (plain, or before hashing).
pub const MIN_PASSWORD_CHARS: usize = 12;

/// One user's secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// An Argon2 hash, PHC string (checked readable when the file was read).
    Argon2(String),
    Plain(String),
}

/// Never prints the secret, hashed or not.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Argon2(_) => "Argon2([REDACTED])",
            Self::Plain(_) => "Plain([REDACTED])",
        })
    }
}

impl Secret {
    /// The users file's field: a hash when it reads as an Argon2 PHC string, else the
    /// password itself (at least [`MIN_PASSWORD_CHARS`]). The error never quotes it.
    pub fn parse(field: &str) -> Result<Self, String> {
        if field.starts_with("$argon2") {
            return match PasswordHash::new(field) {
                Ok(_) => Ok(Self::Argon2(field.to_owned())),
                Err(_) => Err("its Argon2 hash cannot be read (make one with \
                               `hubspot-outbox hash-password`)"
                    .to_owned()),
            };
        }
        if field.chars().count() < MIN_PASSWORD_CHARS {
            return Err(format!(
                "its password is shorter than {MIN_PASSWORD_CHARS} characters"
            ));
        }
        Ok(Self::Plain(field.to_owned()))
    }

    /// Whether `password` is this secret's: an Argon2 check (tens of milliseconds of CPU:
    /// call it off the async threads), or a constant-time comparison.
    pub fn matches(&self, password: &str) -> bool {
        match self {
            Self::Argon2(phc) => PasswordHash::new(phc).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            }),
            Self::Plain(plain) => bool::from(password.as_bytes().ct_eq(plain.as_bytes())),
        }
    }
}

/// `password` hashed for the users file (Argon2id, a new random salt, the crate's default
/// costs); refused when shorter than [`MIN_PASSWORD_CHARS`].
pub fn hash_password(password: &str) -> Result<String, String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is shorter than {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_and_plain_passwords_check_what_they_should() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        let hashed = Secret::parse(&phc).unwrap();
        assert!(hashed.matches("correct horse battery"));
        assert!(!hashed.matches("correct horse batter"));
        let plain = Secret::parse("correct horse battery").unwrap();
        assert!(plain.matches("correct horse battery") && !plain.matches("correct"));
        assert!(hash_password("short").is_err());
        assert!(Secret::parse("short").unwrap_err().contains("shorter"));
        let e = Secret::parse("$argon2id$garbage").unwrap_err();
        assert!(
            e.contains("cannot be read") && !e.contains("garbage"),
            "{e}"
        );
    }
}
