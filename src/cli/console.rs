//! `aftercare console passwd NAME`: write a console user's password hash (argon2id) into the
//! `password_file` the config names for that user. The password comes from the terminal
//! (asked twice, not echoed) or, when stdin is not a terminal, from its first line, so a
//! provisioning script can pipe it in. The daemon reads the file at each sign-in: no restart.

use super::App;
use anyhow::{Context, bail};
use std::io::{BufRead, IsTerminal};
use std::path::Path;

#[derive(clap::Subcommand, Debug)]
pub(super) enum Command {
    /// Set a console user's password: its argon2 hash goes into the user's password_file
    Passwd {
        /// The user's name as listed under console.users
        name: String,
    },
}

/// Shorter passwords are refused: the brake slows guessing, it does not make `1234` safe.
const MIN_LEN: usize = 10;

pub(super) fn run(config_path: &Path, c: Command) -> anyhow::Result<()> {
    let Command::Passwd { name } = c;
    let app = App::load(config_path)?;
    let Some(cfg) = &app.config.console else {
        bail!(
            "{}: there is no console: section; add console: {{users: [{{name: {name}, role: support, password_file: console/{name}}}]}}",
            config_path.display()
        );
    };
    let Some(user) = cfg.user(&name) else {
        let known: Vec<&str> = cfg.users.iter().map(|u| u.name.as_str()).collect();
        bail!(
            "{}: console.users has no user `{}` (users: {}); add {{name: {name}, role: support, password_file: console/{name}}}",
            config_path.display(),
            crate::text::printable(&name),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("new password for {name}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the two passwords differ; nothing was written");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < MIN_LEN {
        bail!("the password is shorter than {MIN_LEN} characters; nothing was written");
    }
    let hash = crate::console::hash_password(&password).map_err(anyhow::Error::msg)?;
    write_private(&user.password_file, &hash).with_context(|| {
        format!(
            "console.users `{name}`: cannot write password_file {}",
            user.password_file.display()
        )
    })?;
    println!(
        "password of console user {name} ({}) written to {}",
        user.role.as_str(),
        user.password_file.display()
    );
    Ok(())
}

/// The hash, readable by its owner only (mode 0600 from creation), replacing the file whole.
fn write_private(path: &Path, hash: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(f, "{hash}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
