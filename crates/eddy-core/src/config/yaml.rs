//! Reads `config.yaml` text into flat `(key, value)` pairs: flat keys (`a.b.c: v`) and nested maps
//! (flattened with dots) alike, lists joined with `;`, scalars as their text. Must never judge
//! whether a key or value is supported (that is validation's job) and never panic on input.

use super::error::{one_line, ConfigError};
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

/// One flattened entry; `value` is `None` for an explicit YAML null (`key:` or `key: ~`).
#[derive(Clone, Debug, PartialEq)]
pub struct YamlEntry {
    pub key: String,
    pub value: Option<String>,
}

/// Flattens the YAML document in `text`; `path` only names the file in errors.
pub fn flatten_yaml(text: &str, path: &Path) -> Result<Vec<YamlEntry>, ConfigError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| ConfigError::Yaml {
        path: path.to_path_buf(),
        line: e.marker().line(),
        message: one_line(e.info()),
    })?;
    let structure_error = |key: &str, message: String| ConfigError::Yaml {
        path: path.to_path_buf(),
        line: line_of(text, key),
        message: one_line(&message),
    };
    let mut out = Vec::new();
    match docs.as_slice() {
        [] | [Yaml::Null] => {}
        [Yaml::Hash(map)] => flatten_map("", map, &mut out, &structure_error)?,
        [_] => {
            return Err(structure_error(
                "",
                "expected a mapping of keys to values".into(),
            ))
        }
        [..] => {
            return Err(structure_error(
                "",
                "expected a single YAML document".into(),
            ))
        }
    }
    Ok(out)
}

fn flatten_map(
    prefix: &str,
    map: &yaml_rust2::yaml::Hash,
    out: &mut Vec<YamlEntry>,
    err: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    for (k, v) in map {
        let Some(name) = scalar_text(k) else {
            return Err(err(
                prefix,
                format!("a key under '{prefix}' is not a plain word"),
            ));
        };
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match v {
            Yaml::Hash(inner) => flatten_map(&key, inner, out, err)?,
            Yaml::Null => out.push(YamlEntry { key, value: None }),
            Yaml::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match scalar_text(item) {
                        Some(t) => parts.push(t),
                        None => {
                            return Err(err(
                                &key,
                                format!("list items of '{key}' must be plain values"),
                            ))
                        }
                    }
                }
                out.push(YamlEntry {
                    key,
                    value: Some(parts.join(";")),
                });
            }
            other => match scalar_text(other) {
                Some(t) => out.push(YamlEntry {
                    key,
                    value: Some(t),
                }),
                None => return Err(err(&key, format!("value of '{key}' is not a plain value"))),
            },
        }
    }
    Ok(())
}

/// The text of a scalar node as written (numbers and booleans in their usual spelling).
fn scalar_text(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Best-effort 1-based line where `key` (flattened) or its last segment is defined; 1 if unknown.
fn line_of(text: &str, key: &str) -> usize {
    if key.is_empty() {
        return 1;
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    [key, last]
        .iter()
        .find_map(|needle| {
            text.lines().position(|l| {
                let l = l.trim_start().trim_start_matches(['"', '\'']);
                l.starts_with(needle)
                    && l[needle.len()..]
                        .trim_start_matches(['"', '\''])
                        .starts_with(':')
            })
        })
        .map_or(1, |i| i + 1)
}
