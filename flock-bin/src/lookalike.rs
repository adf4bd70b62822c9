//! Look-alike usernames: the one check both UIs call before showing a contact.
//!
//! A name is flagged when it mixes scripts (`аlice` with a Cyrillic `а`), when it is
//! confusable with another known name (equal Unicode TR39 skeletons, from the
//! `unicode-security` crate, compared case-insensitively), or, as a milder hint, when
//! it differs from another name only by case (`Eve` and `eve`).

use unicode_security::{MixedScript as _, skeleton};

/// Why a name deserves a second look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookalike {
    /// The name mixes writing systems (for example Latin and Cyrillic letters).
    MixedScript,
    /// The name looks like `other` but is a different name.
    Confusable {
        /// The known name it imitates.
        other: String,
    },
    /// The name equals `other` except for upper and lower case.
    CaseOnly {
        /// The known name.
        other: String,
    },
}

impl std::fmt::Display for Lookalike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MixedScript => f.write_str("mixes alphabets"),
            Self::Confusable { other } => write!(f, "looks like {other}"),
            Self::CaseOnly { other } => write!(f, "differs from {other} only by case"),
        }
    }
}

/// What is suspicious about `name` among `known` names (other contacts and chats;
/// `name` itself may be among them and is skipped). Empty: nothing.
///
/// ```
/// use flock_bin::lookalike::{Lookalike, check};
///
/// let known = ["alice", "eve"];
/// assert!(check("bob", known).is_empty());
/// assert!(check("\u{430}lice", known).contains(&Lookalike::MixedScript));
/// assert_eq!(check("Eve", known), [Lookalike::CaseOnly { other: "eve".into() }]);
/// ```
pub fn check<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<Lookalike> {
    let mut out = Vec::new();
    if !name.is_single_script() {
        out.push(Lookalike::MixedScript);
    }
    let lower = name.to_lowercase();
    let shape = fold(&lower);
    for other in known {
        if other == name || out.iter().any(|l| l.other() == Some(other)) {
            continue;
        }
        let other_lower = other.to_lowercase();
        if other_lower == lower {
            out.push(Lookalike::CaseOnly {
                other: other.to_owned(),
            });
        } else if fold(&other_lower) == shape {
            out.push(Lookalike::Confusable {
                other: other.to_owned(),
            });
        }
    }
    out
}

/// `check` as one short phrase for a UI (`"looks like alice; mixes alphabets"`), or
/// `None` when there is nothing to say.
pub fn describe<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let found = check(name, known);
    (!found.is_empty()).then(|| {
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })
}

impl Lookalike {
    fn other(&self) -> Option<&str> {
        match self {
            Self::MixedScript => None,
            Self::Confusable { other } | Self::CaseOnly { other } => Some(other),
        }
    }
}

/// The TR39 skeleton of a lower-cased name, lower-cased again (the skeleton of `0` is
/// `O`, which should match `o`).
fn fold(lower: &str) -> String {
    skeleton(lower).collect::<String>().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyrillic_a_is_confusable_and_mixed() {
        let found = check("\u{430}lice", ["alice", "bob"]);
        assert_eq!(
            found,
            [
                Lookalike::MixedScript,
                Lookalike::Confusable {
                    other: "alice".into()
                }
            ]
        );
        // And the other way round: the genuine name is confusable with the fake one,
        // but is a single script.
        assert_eq!(
            check("alice", ["\u{430}lice"]),
            [Lookalike::Confusable {
                other: "\u{430}lice".into()
            }]
        );
    }

    #[test]
    fn case_only_is_a_hint() {
        assert_eq!(
            check("Eve", ["eve"]),
            [Lookalike::CaseOnly {
                other: "eve".into()
            }]
        );
        assert_eq!(
            describe("eve", ["Eve"]).as_deref(),
            Some("differs from Eve only by case")
        );
    }

    #[test]
    fn digit_letter_confusables() {
        // `l` / `1` / `I` and `0` / `o` are the classic ones.
        assert!(!check("a1ice", ["alice"]).is_empty());
        assert!(!check("b0b", ["bob"]).is_empty());
        assert!(!check("ALICE", ["alice"]).is_empty());
    }

    #[test]
    fn a_whole_name_in_another_script_is_single_script() {
        // All Cyrillic: one script, not confusable with a different Latin name.
        assert!(check("\u{431}\u{43e}\u{440}\u{438}\u{441}", ["boris"]).is_empty());
        assert!(check("\u{5f20}\u{4f1f}", ["alice"]).is_empty());
        assert!(check("user_42", ["user_43"]).is_empty());
    }

    #[test]
    fn distinct_names_and_itself_are_fine() {
        assert!(check("alice", ["alice", "bob", "carol"]).is_empty());
        assert_eq!(describe("bob", ["alice"]), None);
        assert!(check("alice", []).is_empty());
    }

    #[test]
    fn mixed_script_alone() {
        assert_eq!(check("p\u{430}ypal", []), [Lookalike::MixedScript]);
        assert_eq!(
            describe("p\u{430}ypal", []).as_deref(),
            Some("mixes alphabets")
        );
    }
}
