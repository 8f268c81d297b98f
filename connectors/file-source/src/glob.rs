//! File name patterns for directory mode (`pattern`), as a shell matches names in one
//! directory: `*` (any run of characters), `?` (one character), `[abc]`, `[a-z]` and `[!abc]`
//! (or `[^abc]`); everything else matches itself. A name starting with `.` is matched only by
//! a pattern that starts with `.`, so `*` leaves hidden files (editors' swap files, a file
//! sink's `.<name>.weir-sink`) alone.

/// Why a pattern cannot be used, or `None` when it is good.
pub fn problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        return Some("must not be empty (use * for every file)".into());
    }
    if pattern.contains('/') {
        return Some("matches file names, so it cannot contain '/'".into());
    }
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        if p[i] == '[' {
            match class_end(&p, i) {
                Some(end) => i = end,
                None => return Some(format!("'[' at character {} is never closed", i + 1)),
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Whether `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut si) = (0, 0);
    // Where the last `*` was, and the name position it is currently made to swallow up to.
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            if p[pi] == '*' {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            let next = match p[pi] {
                '?' => Some(pi + 1),
                '[' => match class_end(&p, pi) {
                    Some(end) => in_class(&p[pi + 1..end - 1], s[si]).then_some(end),
                    None => (s[si] == '[').then_some(pi + 1),
                },
                c => (c == s[si]).then_some(pi + 1),
            };
            if let Some(next) = next {
                pi = next;
                si += 1;
                continue;
            }
        }
        // A mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((sp, ss)) => {
                star = Some((sp, ss + 1));
                pi = sp + 1;
                si = ss + 1;
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The index just past the `]` closing the class that opens at `open`; a `]` right after
/// `[` (or `[!`) is a member, not the end.
fn class_end(p: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(p.get(i), Some('!' | '^')) {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    while i < p.len() {
        if p[i] == ']' {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Whether `c` is in a class body (what is between `[` and `]`).
fn in_class(body: &[char], c: char) -> bool {
    let (negated, body) = match body.first() {
        Some('!' | '^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            found |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            found |= body[i] == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_questions() {
        assert!(matches("*", "a.log"));
        assert!(matches("*.log", "a.log"));
        assert!(!matches("*.log", ".log.log"));
        assert!(!matches("*.log", "a.log.1"));
        assert!(matches("app-*.log", "app-2024-01-01.log"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("?.txt", "x.txt"));
        assert!(!matches("?.txt", "xy.txt"));
        assert!(matches("**", ""));
        assert!(!matches("a", ""));
    }

    #[test]
    fn classes() {
        assert!(matches("[ab].log", "a.log"));
        assert!(!matches("[ab].log", "c.log"));
        assert!(matches("[a-c]?", "bz"));
        assert!(matches("[!a-c]", "d"));
        assert!(!matches("[^a-c]", "b"));
        assert!(matches("[]x]", "]"));
        assert!(matches("x[", "x["), "an unclosed [ matches itself");
    }

    #[test]
    fn hidden_files_need_a_dot() {
        assert!(!matches("*", ".out.txt.weir-sink"));
        assert!(!matches("?out", ".out"));
        assert!(matches(".*", ".out"));
    }

    #[test]
    fn problems() {
        assert!(problem("*.log").is_none());
        assert!(problem("").is_some());
        assert!(problem("logs/*.log").is_some());
        assert_eq!(
            problem("a[b").unwrap(),
            "'[' at character 2 is never closed"
        );
    }
}
