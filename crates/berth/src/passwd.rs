//! `berth passwd FILE USER`: adds a user to the password file, or changes their password.
//! The file holds `user:$argon2id$...` lines (salted argon2id hashes), never a password.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};

/// Asks for the password (twice on a terminal, without echo; otherwise the first line of
/// standard input), hashes it, and writes the file back with USER's line added or replaced.
pub fn run(file: &Path, user: &str) -> anyhow::Result<()> {
    let password = read_password()?;
    if password.is_empty() {
        bail!("the password is empty");
    }
    let hash = berth_server::auth::hash_password(password.as_bytes())
        .map_err(|error| anyhow!("cannot hash the password: {error}"))?;
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read {}", file.display()));
        }
    };
    let text = berth_server::auth::set_user_line(&text, user, &hash).map_err(|why| anyhow!(why))?;
    write_private(file, &text)?;
    eprintln!(
        "berth: {user} set in {} (send SIGHUP to running nodes to read it again)",
        file.display()
    );
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
        if first != again {
            bail!("the two passwords differ");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Writes through a temporary file renamed over the old one, so a node reloading at that
/// moment reads the old file or the new one, never half of it; readable by the owner only.
fn write_private(file: &Path, text: &str) -> anyhow::Result<()> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", file.display()))?;
    let temp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut out = options
        .open(&temp)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    out.write_all(text.as_bytes())
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}
