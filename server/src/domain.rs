//! Validated values. A value of one of these types has passed its rule, so code past the
//! edge never re-checks it (and the database's CHECK constraints say the same rules again).

use rand::Rng;

use crate::error::ApiError;

/// 3–32 characters of `a-z 0-9 _ .`, lower-cased on the way in so that uniqueness does not
/// depend on case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.trim().to_lowercase();
        let len = s.chars().count();
        if !(3..=32).contains(&len) {
            return Err(ApiError::validation(
                "username",
                "username must be 3 to 32 characters",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        {
            return Err(ApiError::validation(
                "username",
                "username may contain only letters a-z, digits, '_' and '.'",
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address of plausible syntax: one `@`, a non-empty local part, a domain with a
/// dot, no spaces or control characters, at most 254 characters. Deliverability is not
/// checked here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.trim();
        let invalid = || ApiError::validation("email", "email is not a valid address");
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 8–128 characters (counted as characters, not bytes). Never trimmed: spaces are part of a
/// passphrase.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(ApiError::validation(
                "password",
                "password must be 8 to 128 characters",
            ));
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// 1–64 characters after trimming, no control characters.
pub fn parse_display_name(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim();
    let len = s.chars().count();
    if !(1..=64).contains(&len) {
        return Err(ApiError::validation(
            "display_name",
            "display_name must be 1 to 64 characters",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "display_name",
            "display_name may not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// An absolute `http`/`https` URL of at most 2048 characters with a host.
pub fn parse_profile_pic(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim();
    let invalid = || ApiError::validation("profile_pic", "profile_pic must be an http(s) URL");
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(invalid)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if s.len() > 2048 || host.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    Ok(s.to_owned())
}

/// Friend codes: 8 characters from 31 that cannot be confused when read aloud or typed
/// (no 0/O, 1/I/L). 31^8 ≈ 8.5·10^11 codes keeps random collisions rare; the unique
/// constraint catches the rest and the caller draws again.
pub const FRIEND_CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
pub const FRIEND_CODE_LEN: usize = 8;

pub fn new_friend_code() -> String {
    let mut rng = rand::rng();
    (0..FRIEND_CODE_LEN)
        .map(|_| char::from(FRIEND_CODE_ALPHABET[rng.random_range(0..FRIEND_CODE_ALPHABET.len())]))
        .collect()
}

/// Normalizes a typed friend code: case-insensitive, spaces and dashes ignored.
pub fn parse_friend_code(raw: &str) -> Result<String, ApiError> {
    let code: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if code.len() != FRIEND_CODE_LEN || !code.bytes().all(|b| FRIEND_CODE_ALPHABET.contains(&b)) {
        return Err(ApiError::validation(
            "friend_code",
            "friend_code must be 8 characters like 7KQ4-M2XP",
        ));
    }
    Ok(code)
}

/// Message text: 1–4000 characters after trimming surrounding whitespace; `\r\n` becomes
/// `\n`; no NUL or other control characters except newline and tab. (Valid UTF-8 is
/// guaranteed by the JSON parser, which rejects invalid bytes and lone surrogates.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    pub const MAX_CHARS: usize = 4000;

    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.replace("\r\n", "\n");
        let s = s.trim();
        let len = s.chars().count();
        if !(1..=Self::MAX_CHARS).contains(&len) {
            return Err(ApiError::validation(
                "content",
                "content must be 1 to 4000 characters after trimming",
            ));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ApiError::validation(
                "content",
                "content may not contain NUL or control characters other than newline and tab",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group name: 1–100 characters after trimming, no control characters.
pub fn parse_group_name(raw: &str) -> Result<String, ApiError> {
    let s = raw.trim();
    let len = s.chars().count();
    if !(1..=100).contains(&len) {
        return Err(ApiError::validation(
            "name",
            "name must be 1 to 100 characters",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "name",
            "name may not contain control characters",
        ));
    }
    Ok(s.to_owned())
}

/// A group description: at most 1000 characters after trimming, newlines and tabs allowed,
/// other control characters not. Empty means none.
pub fn parse_description(raw: &str) -> Result<Option<String>, ApiError> {
    let s = raw.trim();
    if s.chars().count() > 1000 {
        return Err(ApiError::validation(
            "description",
            "description must be at most 1000 characters",
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ApiError::validation(
            "description",
            "description may not contain control characters other than newline and tab",
        ));
    }
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// A client's retry key: 1–64 characters, no control characters. Not trimmed: it is an
/// opaque token compared exactly.
pub fn parse_nonce(raw: &str) -> Result<String, ApiError> {
    let len = raw.chars().count();
    if !(1..=64).contains(&len) || raw.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "nonce",
            "nonce must be 1 to 64 characters without control characters",
        ));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_restricted() {
        assert_eq!(
            Username::parse("Alice_01").map(|u| u.0).ok(),
            Some("alice_01".into())
        );
        assert!(Username::parse("ab").is_err());
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse("bad name").is_err());
        assert!(Username::parse("ümit").is_err());
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("a@b.co").is_ok());
        for bad in [
            "", "a", "@b.co", "a@", "a@b", "a@@b.co", "a b@c.de", "a@b..co", "a@.b.co",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn friend_codes_avoid_ambiguous_characters() {
        for _ in 0..200 {
            let code = new_friend_code();
            assert_eq!(code.len(), FRIEND_CODE_LEN);
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']), "{code}");
            assert_eq!(parse_friend_code(&code.to_lowercase()).ok(), Some(code));
        }
        assert!(parse_friend_code("ABCD-EF0H").is_err());
    }

    #[test]
    fn profile_pic_must_be_http_url() {
        assert!(parse_profile_pic("https://example.org/a.png").is_ok());
        for bad in ["ftp://x/y", "javascript:alert(1)", "https://", "http:// x"] {
            assert!(parse_profile_pic(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn message_content_is_trimmed_and_bounded() {
        assert_eq!(
            MessageContent::parse("  hi\r\nthere\t ").map(|c| c.0).ok(),
            Some("hi\nthere".into())
        );
        assert!(MessageContent::parse(&"é".repeat(4000)).is_ok());
        for bad in [
            "",
            "   \n\t ",
            "a\0b",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "cr\ronly",
        ] {
            assert!(MessageContent::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(MessageContent::parse(&"x".repeat(4001)).is_err());
    }

    #[test]
    fn group_names_and_descriptions_are_bounded() {
        assert_eq!(parse_group_name(" Team ").ok(), Some("Team".into()));
        assert!(parse_group_name(&"n".repeat(100)).is_ok());
        for bad in ["", "  ", "a\nb"] {
            assert!(parse_group_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_group_name(&"n".repeat(101)).is_err());
        assert_eq!(parse_description("  ").ok(), Some(None));
        assert!(parse_description(&"d".repeat(1000)).is_ok());
        assert!(parse_description(&"d".repeat(1001)).is_err());
        assert!(parse_nonce("").is_err());
        assert!(parse_nonce(&"n".repeat(65)).is_err());
    }
}
