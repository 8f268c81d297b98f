//! A connector's configuration checked against what its plugin declares, before the plugin
//! sees it: required keys present, no unknown key (with a did-you-mean), values of the
//! declared type. A secret's value (`secret`, or the `password` type) never appears in an
//! error.

use crate::types::{ConfigKey, ConfigType, Descriptor};

/// The problems of `config` against `descriptor`, one line each (`key: why`); empty when it
/// is good. `weir.` keys are the host's and must have been taken out already.
pub fn check_config(descriptor: &Descriptor, config: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in config {
        match descriptor.config.iter().find(|k| &k.name == key) {
            None => problems.push(unknown(descriptor, key)),
            Some(def) => {
                if let Some(why) = type_problem(def, value) {
                    let shown = if def.secret || def.type_ == ConfigType::Password {
                        String::new()
                    } else {
                        format!(" (got {value:?})")
                    };
                    problems.push(format!("{key}: {why}{shown}"));
                }
            }
        }
    }
    for def in &descriptor.config {
        if def.required
            && def.default_value.is_none()
            && !config.iter().any(|(k, _)| k == &def.name)
        {
            problems.push(format!("{}: required", def.name));
        }
    }
    problems
}

fn unknown(descriptor: &Descriptor, key: &str) -> String {
    let close = descriptor
        .config
        .iter()
        .map(|k| (distance(key, &k.name), &k.name))
        .filter(|(d, name)| *d <= 2.max(name.len() / 4))
        .min_by_key(|(d, _)| *d);
    let known: Vec<&str> = descriptor.config.iter().map(|k| k.name.as_str()).collect();
    match close {
        Some((_, name)) => format!("{key}: unknown key (did you mean {name}?)"),
        None if known.is_empty() => format!(
            "{key}: unknown key ({} takes no configuration)",
            descriptor.name
        ),
        None => format!("{key}: unknown key (known: {})", known.join(", ")),
    }
}

fn type_problem(def: &ConfigKey, value: &str) -> Option<&'static str> {
    let v = value.trim();
    match def.type_ {
        ConfigType::Int => v.parse::<i32>().is_err().then_some("not an integer"),
        ConfigType::Long => v.parse::<i64>().is_err().then_some("not an integer"),
        ConfigType::Double => v.parse::<f64>().is_err().then_some("not a number"),
        ConfigType::Boolean => (!v.eq_ignore_ascii_case("true")
            && !v.eq_ignore_ascii_case("false"))
        .then_some("not true or false"),
        ConfigType::String | ConfigType::List | ConfigType::Password => None,
    }
}

/// Edit distance (insertions, deletions, substitutions), for did-you-mean.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PluginKind;

    fn key(
        name: &str,
        type_: ConfigType,
        required: bool,
        default: Option<&str>,
        secret: bool,
    ) -> ConfigKey {
        ConfigKey {
            name: name.into(),
            type_,
            default_value: default.map(Into::into),
            documentation: String::new(),
            required,
            secret,
        }
    }

    fn desc() -> Descriptor {
        Descriptor {
            name: "p".into(),
            version: "1".into(),
            kind: PluginKind::Transform,
            description: String::new(),
            config: vec![
                key("color", ConfigType::String, true, None, false),
                key("count", ConfigType::Int, false, Some("10"), false),
                key("token", ConfigType::Password, false, None, false),
                key("ratio", ConfigType::Double, false, None, true),
                key("on", ConfigType::Boolean, true, Some("false"), false),
            ],
        }
    }

    fn cfg(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn good_configs_pass() {
        assert!(check_config(&desc(), &cfg(&[("color", "red")])).is_empty());
        assert!(
            check_config(
                &desc(),
                &cfg(&[
                    ("color", "red"),
                    ("count", "3"),
                    ("on", "TRUE"),
                    ("ratio", "0.5")
                ])
            )
            .is_empty()
        );
    }

    #[test]
    fn problems_name_the_key_and_never_a_secret() {
        let p = check_config(
            &desc(),
            &cfg(&[
                ("colour", "red"),
                ("count", "many"),
                ("token", "hunter2"),
                ("ratio", "s3cret"),
            ]),
        );
        assert_eq!(
            p,
            vec![
                "colour: unknown key (did you mean color?)".to_string(),
                "count: not an integer (got \"many\")".into(),
                "ratio: not a number".into(),
                "color: required".into(),
            ]
        );
        let p = check_config(&desc(), &cfg(&[("zzzzzz", "1"), ("color", "x")]));
        assert_eq!(
            p,
            vec!["zzzzzz: unknown key (known: color, count, token, ratio, on)".to_string()]
        );
    }
}
