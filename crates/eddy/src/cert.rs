//! `eddy cert generate DIR`: a self-signed CA and one certificate/key for the whole cluster,
//! as PEM files for `security.ssl.{internal,rest}.{cert,key,trust-cert}` (docs/security.md).
//!
//! Files are written with fsync and an atomic rename, keys with mode 0600; an existing file is
//! never overwritten (a cluster's CA replaced by accident would lock its processes out).

use eddy_core::tls::{CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Names every certificate carries besides the `--host` ones.
const DEFAULT_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// Writes `ca.pem`, `ca-key.pem`, `cert.pem` and `key.pem` into `dir` (created if missing).
/// The certificate is valid for 127.0.0.1, localhost and every name of `hosts`, as server and
/// as client (mutual TLS).
pub fn generate(dir: &Path, hosts: &[String]) -> Result<(), String> {
    let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
    for h in hosts {
        let h = h.trim();
        if h.is_empty() || h.contains(['/', ' ', ':']) && h.parse::<std::net::IpAddr>().is_err() {
            return Err(format!(
                "--host '{h}' is not a host name or IP address (e.g. --host tm-1.example or --host 10.0.0.7)"
            ));
        }
        if !names.iter().any(|n| n == h) {
            names.push(h.to_string());
        }
    }
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the directory '{}': {e}", dir.display()))?;
    for f in [CA_CERT_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE] {
        let p = dir.join(f);
        if p.exists() {
            return Err(format!(
                "'{}' exists already; eddy cert generate never overwrites (choose an empty directory)",
                p.display()
            ));
        }
    }
    let bad = |what: &str, e: rcgen::Error| format!("cannot generate the {what}: {e}");

    let ca_key = KeyPair::generate().map_err(|e| bad("CA key", e))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|e| bad("CA", e))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Eddy cluster CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| bad("CA certificate", e))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().map_err(|e| bad("key", e))?;
    let mut params = CertificateParams::new(names).map_err(|e| bad("certificate", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Eddy cluster member");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| bad("certificate", e))?;

    // Keys first, CA certificate last: a directory holding ca.pem is complete.
    write_atomic(
        &dir.join(CA_KEY_FILE),
        issuer.key().serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&dir.join(KEY_FILE), key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&dir.join(CERT_FILE), cert.pem().as_bytes(), 0o644)?;
    write_atomic(&dir.join(CA_CERT_FILE), ca_cert.pem().as_bytes(), 0o644)?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to a temporary file in the same directory with `mode`, fsyncs it and renames
/// it to `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("pem.tmp");
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} '{}': {e}", tmp.display());
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| fail("create", e))?;
    f.write_all(bytes).map_err(|e| fail("write", e))?;
    f.sync_all().map_err(|e| fail("fsync", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| {
        format!(
            "cannot rename '{}' to '{}': {e}",
            tmp.display(),
            path.display()
        )
    })
}

/// The lines `eddy cert generate` prints: the configuration keys to set.
pub fn config_hint(dir: &Path) -> String {
    let d = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let p = |f: &str| d.join(f).display().to_string();
    format!(
        "Wrote {ca}, {cert}, {key} and the CA key {cakey} (keep it offline; only `eddy cert generate` uses it).\n\
         Add to config.yaml:\n\
         security.ssl.internal.enabled: true\n\
         security.ssl.internal.cert: {cert}\n\
         security.ssl.internal.key: {key}\n\
         security.ssl.internal.trust-cert: {ca}\n\
         security.ssl.rest.enabled: true\n\
         security.ssl.rest.cert: {cert}\n\
         security.ssl.rest.key: {key}\n\
         security.ssl.rest.trust-cert: {ca}",
        ca = p(CA_CERT_FILE),
        cert = p(CERT_FILE),
        key = p(KEY_FILE),
        cakey = p(CA_KEY_FILE),
    )
}
