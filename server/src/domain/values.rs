//! Validated values. A value of one of these types has passed its rule, so code past the
//! edge never re-checks it (and the database's CHECK constraints say the same rules again).
//!
//! This module depends on nothing else of the server (the API turns an [`Invalid`] into its
//! 422 `validation_failed`), so the fuzz targets (`fuzz/`) build it on its own.

use rand::Rng;
use unicode_properties::{GeneralCategory, UnicodeEmoji, UnicodeGeneralCategory};

/// A value that breaks its rule: the field it came in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for Invalid {}

/// 3–32 characters of `a-z 0-9 _ .`, lower-cased on the way in so that uniqueness does not
/// depend on case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim().to_lowercase();
        let len = s.chars().count();
        if !(3..=32).contains(&len) {
            return Err(Invalid::new(
                "username",
                "username must be 3 to 32 characters",
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        {
            return Err(Invalid::new(
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
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        let invalid = || Invalid::new("email", "email is not a valid address");
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

/// What a user types to log in: a username or an email, trimmed and lower-cased. At most
/// 254 characters (the longest email) and no control characters: nothing else can name an
/// account (and PostgreSQL refuses a NUL in text). Empty is allowed: it names no account
/// and is answered like any unknown one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginName(String);

impl LoginName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim().to_lowercase();
        if s.chars().count() > 254 || s.chars().any(char::is_control) {
            return Err(Invalid::new(
                "login",
                "login must be a username or an email of at most 254 characters",
            ));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Usernames cannot contain '@', so the shape says which column to look in.
    pub fn is_email(&self) -> bool {
        self.0.contains('@')
    }
}

/// 8–128 characters (counted as characters, not bytes). Never trimmed: spaces are part of a
/// passphrase.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if !(8..=128).contains(&len) {
            return Err(Invalid::new(
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

/// 1–64 characters after trimming, no control or invisible format characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        single_line(raw, "display_name", 64).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name-like field: 1–`max` characters after trimming, no control characters, and no
/// invisible format characters (Unicode category Cf: bidi overrides like U+202E, zero-width
/// spaces and joiners), which let a name pose as another. A zero-width joiner between two
/// emoji (as in 👩‍💻) stays: it is how those emoji are written.
fn single_line(raw: &str, field: &'static str, max: usize) -> Result<String, Invalid> {
    let s = raw.trim();
    let len = s.chars().count();
    if !(1..=max).contains(&len) {
        return Err(Invalid::new(
            field,
            format!("{field} must be 1 to {max} characters"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            format!("{field} may not contain control characters"),
        ));
    }
    if has_invisible_format(s) {
        return Err(Invalid::new(
            field,
            format!("{field} may not contain invisible formatting characters"),
        ));
    }
    Ok(s.to_owned())
}

/// Whether `s` holds a format character (Cf) other than a zero-width joiner inside an emoji
/// sequence.
fn has_invisible_format(s: &str) -> bool {
    const ZWJ: char = '\u{200D}';
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        if c.general_category() != GeneralCategory::Format {
            return false;
        }
        let joins_emoji = c == ZWJ
            && i > 0
            && chars[i - 1].is_emoji_char_or_emoji_component()
            && chars.get(i + 1).is_some_and(|n| n.is_emoji_char());
        !joins_emoji
    })
}

/// A profile picture: an absolute `http`/`https` URL of at most 2048 characters with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePicUrl(String);

impl ProfilePicUrl {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.trim();
        let invalid = || Invalid::new("profile_pic", "profile_pic must be an http(s) URL");
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(invalid)?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if s.len() > 2048
            || host.is_empty()
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Friend codes: 8 characters from 31 that cannot be confused when read aloud or typed
/// (no 0/O, 1/I/L). 31^8 ≈ 8.5·10^11 codes keeps random collisions rare; the unique
/// constraint catches the rest and the caller draws again.
pub const FRIEND_CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
pub const FRIEND_CODE_LEN: usize = 8;

/// A friend code: [`FRIEND_CODE_LEN`] characters of [`FRIEND_CODE_ALPHABET`], upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendCode(String);

impl FriendCode {
    /// Draws a new random code.
    pub fn random() -> Self {
        let mut rng = rand::rng();
        Self(
            (0..FRIEND_CODE_LEN)
                .map(|_| {
                    char::from(
                        FRIEND_CODE_ALPHABET[rng.random_range(0..FRIEND_CODE_ALPHABET.len())],
                    )
                })
                .collect(),
        )
    }

    /// Normalizes a typed friend code: case-insensitive, spaces and dashes ignored.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let code: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if code.len() != FRIEND_CODE_LEN || !code.bytes().all(|b| FRIEND_CODE_ALPHABET.contains(&b))
        {
            return Err(Invalid::new(
                "friend_code",
                "friend_code must be 8 characters like 7KQ4-M2XP",
            ));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Message text: 1–4000 characters after trimming surrounding whitespace; `\r\n` becomes
/// `\n`; no NUL or other control characters except newline and tab. (Valid UTF-8 is
/// guaranteed by the JSON parser, which rejects invalid bytes and lone surrogates.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContent(String);

impl MessageContent {
    pub const MAX_CHARS: usize = 4000;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let s = raw.replace("\r\n", "\n");
        let s = s.trim();
        let len = s.chars().count();
        if !(1..=Self::MAX_CHARS).contains(&len) {
            return Err(Invalid::new(
                "content",
                "content must be 1 to 4000 characters after trimming",
            ));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(Invalid::new(
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

/// A group name: 1–100 characters after trimming, no control or invisible format
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        single_line(raw, "name", 100).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group description: 1–1000 characters after trimming, newlines and tabs allowed, other
/// control characters not. Empty (after trimming) means none: [`Description::parse`] then
/// answers `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Option<Self>, Invalid> {
        let s = raw.trim();
        if s.chars().count() > 1000 {
            return Err(Invalid::new(
                "description",
                "description must be at most 1000 characters",
            ));
        }
        if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(Invalid::new(
                "description",
                "description may not contain control characters other than newline and tab",
            ));
        }
        Ok((!s.is_empty()).then(|| Self(s.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client's retry key: 1–64 characters, no control characters. Not trimmed: it is an
/// opaque token compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce(String);

impl Nonce {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let len = raw.chars().count();
        if !(1..=64).contains(&len) || raw.chars().any(char::is_control) {
            return Err(Invalid::new(
                "nonce",
                "nonce must be 1 to 64 characters without control characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_invisible_format_characters_but_keep_emoji_sequences() {
        // A right-to-left override (reads as "alice" reversed), zero-width space, joiner,
        // non-joiner, word joiner, byte-order mark, left-to-right mark.
        for spoof in [
            "ecila\u{202E}",
            "al\u{200B}ice",
            "al\u{200D}ice",
            "al\u{200C}ice",
            "al\u{2060}ice",
            "\u{FEFF}alice",
            "alice\u{200E}",
        ] {
            assert!(DisplayName::parse(spoof).is_err(), "{spoof:?}");
            assert!(GroupName::parse(spoof).is_err(), "{spoof:?}");
        }
        for fine in [
            "Ayşe 👩\u{200D}💻",
            "🏳\u{FE0F}\u{200D}🌈 team",
            "Çağrı",
            "عربي",
        ] {
            assert!(DisplayName::parse(fine).is_ok(), "{fine:?}");
            assert!(GroupName::parse(fine).is_ok(), "{fine:?}");
        }
    }

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
            let code = FriendCode::random();
            assert_eq!(code.as_str().len(), FRIEND_CODE_LEN);
            assert!(
                !code.as_str().contains(['0', 'O', '1', 'I', 'L']),
                "{code:?}"
            );
            assert_eq!(
                FriendCode::parse(&code.as_str().to_lowercase()).ok(),
                Some(code)
            );
        }
        assert!(FriendCode::parse("ABCD-EF0H").is_err());
    }

    #[test]
    fn display_names_are_trimmed_single_lines() {
        assert_eq!(
            DisplayName::parse("  Ayşe  ").map(|n| n.0).ok(),
            Some("Ayşe".into())
        );
        assert!(DisplayName::parse(&"d".repeat(64)).is_ok());
        for bad in ["", "   ", "a\nb", "nul\0"] {
            assert!(DisplayName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(DisplayName::parse(&"d".repeat(65)).is_err());
    }

    #[test]
    fn login_names_refuse_control_characters_and_overlong_input() {
        assert_eq!(
            LoginName::parse(" Ali@Example.ORG ").map(|l| l.0).ok(),
            Some("ali@example.org".into())
        );
        for bad in ["a\0b".to_owned(), "tab\tname".to_owned(), "x".repeat(255)] {
            assert!(LoginName::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn profile_pic_must_be_http_url() {
        assert!(ProfilePicUrl::parse("https://example.org/a.png").is_ok());
        for bad in ["ftp://x/y", "javascript:alert(1)", "https://", "http:// x"] {
            assert!(ProfilePicUrl::parse(bad).is_err(), "{bad} accepted");
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
        assert_eq!(
            GroupName::parse(" Team ").map(|n| n.0).ok(),
            Some("Team".into())
        );
        assert!(GroupName::parse(&"n".repeat(100)).is_ok());
        for bad in ["", "  ", "a\nb"] {
            assert!(GroupName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(GroupName::parse(&"n".repeat(101)).is_err());
        assert_eq!(Description::parse("  ").ok(), Some(None));
        assert!(Description::parse(&"d".repeat(1000)).is_ok());
        assert!(Description::parse(&"d".repeat(1001)).is_err());
        assert!(Nonce::parse("").is_err());
        assert!(Nonce::parse(&"n".repeat(65)).is_err());
    }
}
