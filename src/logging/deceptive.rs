//! Characters that make a plain-text log line lie: line and paragraph separators start what
//! looks like a new line, bidirectional controls reorder what a reader sees, and invisible
//! format characters make two different ids look the same. Control characters (`Cc`) are
//! caught by `char::is_control`; these are the rest: Unicode's `Zl`, `Zp` and `Cf`.

/// True for a line/paragraph separator or an invisible format character (`Cf`: bidi
/// controls, zero-width characters, the soft hyphen, tag characters, ...).
pub(crate) fn is_deceptive(c: char) -> bool {
    matches!(
        c as u32,
        0x2028 | 0x2029 // Zl, Zp
            | 0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::is_deceptive;

    #[test]
    fn separators_bidi_and_invisible_characters_are_caught_and_text_is_not() {
        for c in [
            '\u{202E}',
            '\u{2028}',
            '\u{2029}',
            '\u{200B}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{AD}',
            '\u{E0041}',
        ] {
            assert!(is_deceptive(c), "{:04X}", c as u32);
        }
        for c in ['a', 'é', '名', ' ', '-', '\u{1F600}', 'א'] {
            assert!(!is_deceptive(c), "{:04X}", c as u32);
        }
    }
}
