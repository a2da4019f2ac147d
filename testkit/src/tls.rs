//! Test certificates made by the openssl command line (scripts/install.sh installs it): a CA
//! and a server certificate it signs, for servers that must speak TLS in a test.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A CA and a server certificate for `localhost` and 127.0.0.1 signed by it, in one directory.
#[derive(Clone, Debug)]
pub struct Certificates {
    /// The CA certificate (PEM), what clients trust.
    pub ca_pem: String,
    /// Path of the CA certificate.
    pub ca: PathBuf,
    /// Path of the server certificate (PEM), valid for `localhost` and 127.0.0.1, one day.
    pub cert: PathBuf,
    /// Path of the server certificate's private key (PEM, P-256).
    pub key: PathBuf,
}

/// Makes a fresh CA and server certificate in `dir`; two calls give CAs that do not trust
/// each other's certificates.
pub fn certificates(dir: &Path) -> Result<Certificates> {
    let run = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl (scripts/install.sh installs it)")?;
        if !out.status.success() {
            bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_args = [
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
    ];
    run(&[&["req", "-x509"][..], &ec, &ca_args].concat())?;
    let csr_args = [
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ];
    run(&[&["req"][..], &ec, &csr_args].concat())?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "1",
        "-extfile",
        "server.ext",
    ])?;
    Ok(Certificates {
        ca_pem: std::fs::read_to_string(dir.join("ca.pem"))?,
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    })
}
