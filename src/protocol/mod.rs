//! Wire format: what clients send (commands, `commands.rs`) and what the server sends
//! (`encode.rs`: JSON, or the seed tutorial's format, chosen per connection as a `Wire`), and
//! the Pusher Channels protocol both ways (`pusher.rs`).
//!
//! Pure functions, no I/O, so the whole format is unit-testable and fuzzable. The full message
//! list is in `docs/protocol.md`.

mod commands;
mod encode;
pub mod pusher;

pub use commands::{parse_client, Command, Request, Target};
pub use encode::{event_message, message, Codec, Member, Out, User, Wire};

/// Checks a room name: 1..=max characters, no control characters, no surrounding blanks.
pub fn validate_room(room: &str, max_chars: usize) -> Result<(), String> {
    if room.is_empty() {
        return Err("room name is empty".into());
    }
    if room.chars().count() > max_chars {
        return Err(format!("room name is longer than {max_chars} characters"));
    }
    if room.chars().any(char::is_control) {
        return Err("room name contains control characters".into());
    }
    if room.trim() != room {
        return Err("room name starts or ends with blanks".into());
    }
    Ok(())
}

/// Cleans a requested display name: control characters removed, blanks trimmed, cut to
/// `max_chars`. Returns None when nothing usable is left.
pub fn clean_name(raw: &str, max_chars: usize) -> Option<String> {
    let no_ctl: String = raw.chars().filter(|c| !c.is_control()).collect();
    let cut: String = no_ctl.trim().chars().take(max_chars).collect();
    let cut = cut.trim_end().to_string();
    (!cut.is_empty()).then_some(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_validated() {
        assert!(validate_room("lobby", 64).is_ok());
        assert!(validate_room("", 64).is_err());
        assert!(validate_room("a\nb", 64).is_err());
        assert!(validate_room(" lobby", 64).is_err());
        assert!(validate_room(&"x".repeat(65), 64).is_err());
        assert!(validate_room("кухня", 64).is_ok());
    }

    #[test]
    fn names_are_trimmed_cleaned_and_cut() {
        assert_eq!(clean_name("  bob \n", 32).as_deref(), Some("bob"));
        assert_eq!(clean_name("a\u{0}b", 32).as_deref(), Some("ab"));
        assert_eq!(clean_name("   ", 32), None);
        assert_eq!(clean_name("abcdef", 3).as_deref(), Some("abc"));
        assert_eq!(clean_name("ab   cd", 3).as_deref(), Some("ab"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn cleaned_names_are_short_trimmed_and_printable(raw in any::<String>(), max in 1usize..40) {
            if let Some(n) = clean_name(&raw, max) {
                prop_assert!(n.chars().count() <= max);
                prop_assert_eq!(n.trim(), n.as_str());
                prop_assert!(!n.chars().any(char::is_control));
            }
        }
    }
}
