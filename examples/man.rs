//! Writes the man pages, generated from the clap definitions: `apparmor-loader.1` and one
//! `apparmor-loader-SUBCOMMAND.1` per subcommand, into the directory given (`make man`).
//!
//! An example rather than a subcommand, so `clap_mangen` stays out of the shipped binary.

use std::path::{Path, PathBuf};

use apparmor_loader::config::Cli;
use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args_os().nth(1).unwrap_or_else(|| "target/man".into()));
    std::fs::create_dir_all(&dir)?;
    let cmd = Cli::command().name("apparmor-loader");
    write_page(&dir, "apparmor-loader", cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("apparmor-loader-{}", sub.get_name());
        // The page's NAME and SYNOPSIS read `apparmor-loader-check`, as git's pages do.
        write_page(&dir, &name, sub.clone().name(name.clone()).version(cmd.get_version().unwrap_or_default().to_owned()))?;
    }
    Ok(())
}

fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> std::io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page)?;
    println!("{}", path.display());
    Ok(())
}
