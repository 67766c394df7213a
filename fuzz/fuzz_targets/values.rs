#![no_main]
//! Every validated value of the server (server/src/domain/values.rs, built here on its
//! own): any text is refused or accepted without a panic; an accepted value parses again
//! to itself, and keeps the rule of its database column (the CHECK constraints of
//! migrations/), so a value that passed the edge can never make an insert fail with a 500.
//! PostgreSQL refuses NUL in text: no accepted value holds one.

#[allow(dead_code)]
#[path = "../../server/src/domain/values.rs"]
mod values;

use libfuzzer_sys::fuzz_target;
use values::*;

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn no_nul(s: &str) {
    assert!(!s.contains('\0'), "{s:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = Username::parse(raw) {
        // users_username_check: ^[a-z0-9_.]{3,32}$
        let s = v.as_str();
        assert!((3..=32).contains(&s.len()), "{s:?}");
        assert!(s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'));
        assert_eq!(Username::parse(s).as_ref(), Ok(&v));
    }
    if let Ok(v) = Email::parse(raw) {
        // users_email_check: char_length <= 254 and ^[^@\s]+@[^@\s]+$
        let s = v.as_str();
        no_nul(s);
        assert!(chars(s) <= 254);
        let (local, domain) = s.split_once('@').expect("an @");
        assert!(
            !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
            "{s:?}"
        );
        assert!(!s.chars().any(char::is_whitespace), "{s:?}");
        assert_eq!(Email::parse(s).as_ref(), Ok(&v));
    }
    if let Ok(v) = LoginName::parse(raw) {
        no_nul(v.as_str());
        assert!(chars(v.as_str()) <= 254);
    }
    if let Ok(v) = Password::parse(raw.to_owned()) {
        assert!((8..=128).contains(&chars(v.expose())));
    }
    if let Ok(v) = DisplayName::parse(raw) {
        // users_display_name_check: char_length between 1 and 64
        no_nul(v.as_str());
        assert!((1..=64).contains(&chars(v.as_str())));
        assert_eq!(DisplayName::parse(v.as_str()).as_ref(), Ok(&v));
    }
    if let Ok(v) = ProfilePicUrl::parse(raw) {
        // users_profile_pic_check: char_length <= 2048 and ^https?://
        let s = v.as_str();
        no_nul(s);
        assert!(chars(s) <= 2048);
        assert!(
            s.starts_with("http://") || s.starts_with("https://"),
            "{s:?}"
        );
        assert_eq!(ProfilePicUrl::parse(s).as_ref(), Ok(&v));
    }
    if let Ok(v) = FriendCode::parse(raw) {
        // users_friend_code_check: ^[2-9A-HJKMNP-Z]{8}$
        let s = v.as_str();
        assert_eq!(s.len(), FRIEND_CODE_LEN);
        assert!(
            s.bytes().all(|b| FRIEND_CODE_ALPHABET.contains(&b)),
            "{s:?}"
        );
        assert_eq!(FriendCode::parse(s).as_ref(), Ok(&v));
    }
    if let Ok(v) = MessageContent::parse(raw) {
        // messages_content_check: char_length between 1 and 4000
        // and content = btrim(content, E' \t\r\n')
        let s = v.as_str();
        no_nul(s);
        assert!((1..=4000).contains(&chars(s)));
        assert_eq!(s, s.trim_matches([' ', '\t', '\r', '\n']), "{s:?}");
        assert_eq!(MessageContent::parse(s).as_ref(), Ok(&v));
    }
    if let Ok(v) = GroupName::parse(raw) {
        // chat_groups_name_check: char_length between 1 and 100
        no_nul(v.as_str());
        assert!((1..=100).contains(&chars(v.as_str())));
        assert_eq!(GroupName::parse(v.as_str()).as_ref(), Ok(&v));
    }
    if let Ok(Some(v)) = Description::parse(raw) {
        // chat_groups_description_check: char_length <= 1000
        no_nul(v.as_str());
        assert!(chars(v.as_str()) <= 1000);
        assert_eq!(
            Description::parse(v.as_str()).as_ref(),
            Ok(&Some(v.clone()))
        );
    }
    if let Ok(v) = Nonce::parse(raw) {
        // messages_nonce_check: char_length between 1 and 64
        no_nul(v.as_str());
        assert!((1..=64).contains(&chars(v.as_str())));
        assert_eq!(Nonce::parse(v.as_str()).as_ref(), Ok(&v));
    }
});
