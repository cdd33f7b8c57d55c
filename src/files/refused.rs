//! Names the gateway refuses to create (`files.refuse`): patterns on the
//! last name of a path, such as macOS Finder's `._*` AppleDouble companions
//! and `.DS_Store`, which a shared tree is better without. `*` matches any
//! run of characters and `?` one character; matching ignores ASCII case,
//! as ownCloud's own list does. A refused write changes nothing; reading,
//! listing and deleting such names stay possible (one created before the
//! pattern was set can still be removed).

/// A name a pattern refused, for the reply and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the name {name:?} is refused by this server (pattern {pattern:?})")]
pub struct RefusedName {
    pub name: String,
    pub pattern: String,
}

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("an empty pattern would refuse nothing")]
    Empty,
    #[error("pattern {0:?} contains a slash, but it matches one name, not a path")]
    Slash(String),
}

/// The configured patterns.
#[derive(Debug, Clone, Default)]
pub struct RefusedNames {
    patterns: Vec<String>,
}

impl RefusedNames {
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        for p in patterns {
            if p.is_empty() {
                return Err(PatternError::Empty);
            }
            if p.contains('/') {
                return Err(PatternError::Slash(p.clone()));
            }
        }
        Ok(Self {
            patterns: patterns.to_vec(),
        })
    }

    /// The patterns as configured (the OCS capabilities list them).
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Refuses `path` if its last name matches a pattern.
    pub fn check(&self, path: &[String]) -> Result<(), RefusedName> {
        let Some(name) = path.last() else {
            return Ok(());
        };
        match self.patterns.iter().find(|p| matches(p, name)) {
            Some(p) => Err(RefusedName {
                name: name.clone(),
                pattern: p.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Whether `name` matches `pattern` (`*`, `?`, ASCII case ignored).
/// Iterative, with one backtrack point: linear in practice, never
/// exponential whatever the pattern.
fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> Vec<String> {
        vec!["dir".into(), name.into()]
    }

    #[test]
    fn globs_match_the_last_name() {
        let r = RefusedNames::new(&["._*".into(), ".DS_Store".into(), "~$*.doc?".into()]).unwrap();
        for refused in ["._photo.jpg", "._", ".ds_store", ".DS_Store", "~$a.docx"] {
            assert!(r.check(&path(refused)).is_err(), "{refused}");
        }
        for kept in [
            "photo.jpg",
            "a._b",
            ".DS_Store2",
            "x.DS_Store",
            "~$a.doc",
            "_.",
        ] {
            assert!(r.check(&path(kept)).is_ok(), "{kept}");
        }
        // Only the last name counts.
        assert!(r.check(&["._dir".to_string(), "file".to_string()]).is_ok());
        assert!(r.check(&[]).is_ok());
        let e = r.check(&path("._x")).unwrap_err();
        assert_eq!(e.pattern, "._*");
    }

    #[test]
    fn wildcards() {
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(!matches("a*b*c", "aXXbYY"));
        assert!(matches("?é?", "xéy"));
        assert!(!matches("?", ""));
        assert!(matches("**a", "a"));
        // No exponential blow-up on a hostile pattern.
        let name = "a".repeat(255);
        assert!(!matches(
            &"*a".repeat(50).to_string().replace("*a*a", "*a*b"),
            &name
        ));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(
            RefusedNames::new(&[String::new()]).unwrap_err(),
            PatternError::Empty
        );
        assert!(matches!(
            RefusedNames::new(&["a/b".into()]),
            Err(PatternError::Slash(_))
        ));
    }
}
