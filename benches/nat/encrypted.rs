//! rathole's transports: the `[server.transport]` and `[client.transport]`
//! sections for plain TCP, Noise and TLS, with the key material each needs,
//! made fresh for every run.
//!
//! - Noise: rathole's default pattern (`Noise_NK_25519_ChaChaPoly_BLAKE2s`,
//!   the server authenticated by its static key), with a keypair from
//!   `rathole --genkey`.
//! - TLS: rathole's native-tls build (OpenSSL on Linux) needs the server's
//!   identity as a PKCS#12 archive and the client a root to trust and a host
//!   name: the harness makes a CA and a `localhost` certificate (P-256 ECDSA)
//!   with `openssl` in the scratch directory. Without `openssl` the chain is
//!   skipped.

use std::fs;
use std::path::Path;
use std::process::Command;

/// The transport sections of rathole's server and client configuration
/// (the `tcp` sub-section, with `nodelay`, is added by the caller).
pub struct Transport {
    pub server: String,
    pub client: String,
}

impl Transport {
    /// Plain TCP.
    pub fn tcp() -> Transport {
        Transport {
            server: "[server.transport]\ntype = \"tcp\"\n".into(),
            client: "[client.transport]\ntype = \"tcp\"\n".into(),
        }
    }
}

/// The value on the line after `label` in `rathole --genkey`'s output.
fn key_after(text: &str, label: &str) -> Option<String> {
    let mut lines = text.lines().map(str::trim);
    lines.find(|line| line.starts_with(label))?;
    lines.find(|line| !line.is_empty()).map(str::to_string)
}

/// Noise with a fresh keypair: the server keeps the private key, the client
/// the public one.
pub fn noise(rathole: &Path) -> Result<Transport, String> {
    let out = Command::new(rathole)
        .arg("--genkey")
        .output()
        .map_err(|e| format!("{} --genkey: {e}", rathole.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (Some(private), Some(public)) = (
        key_after(&text, "Private Key"),
        key_after(&text, "Public Key"),
    ) else {
        return Err(format!(
            "skipped: rathole --genkey gave no keypair ({}): a build without the noise feature?",
            out.status
        ));
    };
    Ok(Transport {
        server: format!(
            "[server.transport]\ntype = \"noise\"\n\n[server.transport.noise]\n\
             local_private_key = \"{private}\"\n"
        ),
        client: format!(
            "[client.transport]\ntype = \"noise\"\n\n[client.transport.noise]\n\
             remote_public_key = \"{public}\"\n"
        ),
    })
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("skipped: openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        Err(format!("openssl {}: {} {last}", args.join(" "), out.status))
    }
}

/// TLS with a fresh CA and a `localhost` certificate signed by it, the server's
/// identity as PKCS#12 (password `bench`).
pub fn tls(scratch: &Path) -> Result<Transport, String> {
    let dir = scratch.join("rathole-tls");
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=bench CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(&dir, &ca)?;
    let mut csr = vec!["req", "-new", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&dir, &csr)?;
    let ext = "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n";
    fs::write(dir.join("server.ext"), ext).map_err(|e| format!("server.ext: {e}"))?;
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )?;
    openssl(
        &dir,
        &[
            "pkcs12",
            "-export",
            "-out",
            "identity.pfx",
            "-inkey",
            "server.key",
            "-in",
            "server.crt",
            "-certfile",
            "ca.crt",
            "-passout",
            "pass:bench",
        ],
    )?;
    let pfx = dir.join("identity.pfx");
    let root = dir.join("ca.crt");
    Ok(Transport {
        server: format!(
            "[server.transport]\ntype = \"tls\"\n\n[server.transport.tls]\n\
             pkcs12 = \"{}\"\npkcs12_password = \"bench\"\n",
            pfx.display()
        ),
        client: format!(
            "[client.transport]\ntype = \"tls\"\n\n[client.transport.tls]\n\
             trusted_root = \"{}\"\nhostname = \"localhost\"\n",
            root.display()
        ),
    })
}
