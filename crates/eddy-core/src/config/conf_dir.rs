//! The configuration directory (`--conf DIR` or `EDDY_CONF_DIR`): finding it and reading its
//! files — `config.yaml` (as raw flattened entries), `masters` (`host:rest_port` lines) and
//! `workers` (host lines). Must never validate configuration keys or start anything.

use super::error::{one_line, ConfigError};
use super::values::{is_host, parse_host_port};
use super::yaml::{flatten_yaml, YamlEntry};
use std::path::{Path, PathBuf};

/// Environment variable naming the configuration directory when `--conf` is not given.
pub const CONF_DIR_ENV: &str = "EDDY_CONF_DIR";
/// The configuration file inside the directory (Flink 2.x name).
pub const CONFIG_FILE: &str = "config.yaml";
pub const MASTERS_FILE: &str = "masters";
pub const WORKERS_FILE: &str = "workers";

/// `explicit`, else `EDDY_CONF_DIR` (if set and non-empty), else `None`.
pub fn resolve_conf_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    resolve_with(explicit, std::env::var_os(CONF_DIR_ENV))
}

/// [`resolve_conf_dir`] with the environment value passed in (testable without touching env).
pub(crate) fn resolve_with(
    explicit: Option<&Path>,
    env: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
}

fn check_dir(dir: &Path) -> Result<(), ConfigError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(ConfigError::NoSuchDir {
            path: dir.to_path_buf(),
        })
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.to_path_buf(),
        message: one_line(&e.to_string()),
    })
}

/// Flattened entries of `<dir>/config.yaml`; an absent file gives no entries and a warning.
/// The directory itself must exist.
pub fn read_config_yaml(
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<YamlEntry>, ConfigError> {
    check_dir(dir)?;
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        let legacy = dir.join("flink-conf.yaml");
        if legacy.exists() {
            warnings.push(format!(
                "'{}' is ignored: Eddy reads '{}' (standard YAML, same keys)",
                legacy.display(),
                path.display()
            ));
        } else {
            warnings.push(format!("no '{}'; using defaults", path.display()));
        }
        return Ok(Vec::new());
    }
    flatten_yaml(&read(&path)?, &path)
}

/// Non-comment lines of a host list file: (1-based line number, trimmed content). Everything
/// after `#` is a comment; blank lines are skipped.
fn entries(path: &Path) -> Result<Vec<(usize, String)>, ConfigError> {
    Ok(read(path)?
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let content = line.split('#').next().unwrap_or("").trim();
            (!content.is_empty()).then(|| (i + 1, content.to_string()))
        })
        .collect())
}

/// `<dir>/masters`: one `host:rest_port` per line (IPv6 as `[addr]:port`), one per JobManager.
pub fn read_masters(dir: &Path) -> Result<Vec<(String, u16)>, ConfigError> {
    check_dir(dir)?;
    let path = dir.join(MASTERS_FILE);
    entries(&path)?
        .into_iter()
        .map(|(line, content)| {
            parse_host_port(&content, None).ok_or_else(|| ConfigError::BadLine {
                path: path.clone(),
                line,
                expected: "host:rest_port such as 'localhost:8081'".into(),
                content: one_line(&content),
            })
        })
        .collect()
}

/// `<dir>/workers`: one host per line, one TaskManager per line (a host may repeat).
pub fn read_workers(dir: &Path) -> Result<Vec<String>, ConfigError> {
    check_dir(dir)?;
    let path = dir.join(WORKERS_FILE);
    entries(&path)?
        .into_iter()
        .map(|(line, content)| {
            if is_host(&content) {
                Ok(content)
            } else {
                Err(ConfigError::BadLine {
                    path: path.clone(),
                    line,
                    expected: "a host name or IP address such as 'localhost'".into(),
                    content: one_line(&content),
                })
            }
        })
        .collect()
}
