//! The Node Feature Discovery local feature file: `key=value` lines that nfd-worker turns into
//! node labels, written atomically after every sync. Needs no API access: only the host
//! directory `features.d/` mounted into the agent (manifests/components/nfd-labels).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Readiness;
use super::labels::{self, Renamed};
use crate::reconcile::Report;

/// nfd-worker ignores a feature file larger than this (its `MaxFeatureFileSize`).
pub const NFD_MAX_FILE_SIZE: usize = 65536;

const HEADER: &str = "# AppArmor profiles apparmor-loader has loaded on this node, for Node Feature Discovery.\n\
# Rewritten after every sync: edits are lost. See the README's \"Keeping pods off nodes without their profile\".\n";

/// The feature file could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} the node feature file {}", path.display())]
pub struct FeatureFileError {
    /// `write` or `remove`: the verb of the message.
    what: &'static str,
    /// The feature file, also when what failed was its temp file `.NAME.tmp` beside it.
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The file's content for a sync, and the profile labels left out to stay under NFD's size limit.
/// `None`: nothing is managed at all, so the file is removed.
pub fn render(readiness: &Readiness, modes: &BTreeMap<String, String>) -> (Option<String>, Vec<Renamed>, usize) {
    if readiness.loaded.is_empty() && readiness.desired.is_empty() {
        return (None, Vec::new(), 0);
    }
    let node = labels::node_labels(readiness, modes);
    let mut text = String::from(HEADER);
    let mut dropped = 0;
    for (key, value) in &node.labels {
        let line = format!("{key}={value}\n");
        if text.len() + line.len() > NFD_MAX_FILE_SIZE {
            dropped += 1;
            continue;
        }
        text.push_str(&line);
    }
    (Some(text), node.renamed, dropped)
}

/// Writes `content` to `path` atomically: a hidden temp file beside it (nfd-worker skips dotfiles),
/// fsync, rename. A reader sees the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, content: &str) -> Result<(), FeatureFileError> {
    let err = |what| move |source| FeatureFileError { what, path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(err("write"))?;
    f.write_all(content.as_bytes()).map_err(err("write"))?;
    f.sync_all().map_err(err("write"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err("write"))?;
    Ok(())
}

/// Removes the file; `Ok(false)` when there was none.
pub fn remove(path: &Path) -> Result<bool, FeatureFileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FeatureFileError { what: "remove", path: path.to_path_buf(), source }),
    }
}

/// The agent's feature file: rewritten when a sync changes what it says, never fatal.
#[derive(Debug)]
pub struct FeatureFile {
    path: PathBuf,
    /// What the file holds now (`Some(None)`: known to be absent); `None` forces a write.
    written: Option<Option<String>>,
    /// The directory was missing at the last attempt (said once, not at every sync).
    dir_missing: bool,
}

impl FeatureFile {
    /// The file at `path`; nothing is written before the first sync.
    pub fn new(path: PathBuf) -> FeatureFile {
        FeatureFile { path, written: None, dir_missing: false }
    }

    /// Brings the file in line with a sync's report. Errors are logged and retried at the next sync.
    pub fn update(&mut self, report: &Report) {
        let modes: BTreeMap<String, String> =
            report.profiles.iter().filter_map(|p| p.mode.clone().map(|m| (p.name.clone(), m))).collect();
        let (content, renamed, dropped) = render(&Readiness::of(report), &modes);
        if self.written.as_ref() == Some(&content) {
            return;
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if !dir.is_dir() {
            if !self.dir_missing {
                tracing::info!(dir = %dir.display(), "the Node Feature Discovery features directory does not exist; node labels are not written");
                self.dir_missing = true;
            }
            return;
        }
        self.dir_missing = false;
        let result = match &content {
            Some(text) => write_atomic(&self.path, text),
            None => remove(&self.path).map(|_| ()),
        };
        match result {
            Ok(()) => {
                log_renamed(&renamed, dropped);
                tracing::info!(path = %self.path.display(), labels = content.as_deref().map_or(0, |c| c.lines().filter(|l| !l.starts_with('#')).count()), "node feature file updated");
                self.written = Some(content);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), "node labels not updated; retrying at the next sync");
                self.written = None;
            }
        }
    }
}

fn log_renamed(renamed: &[Renamed], dropped: usize) {
    for r in renamed {
        match r {
            Renamed::Hashed { profile, label } => {
                tracing::info!(profile, label = %format!("{}{label}", labels::PROFILE_PREFIX), "profile name is not a valid label name; labelled by its hash")
            }
            Renamed::Skipped { profile, label } => {
                tracing::warn!(profile, label, "profile not labelled: its hashed label name is another profile's name")
            }
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            limit = NFD_MAX_FILE_SIZE,
            "profile labels left out: Node Feature Discovery ignores larger feature files"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::{FileReport, ItemState, ProfileReport};

    fn profile(name: &str, state: ItemState, mode: Option<&str>) -> ProfileReport {
        ProfileReport {
            name: name.into(),
            mode: mode.map(Into::into),
            state,
            file: Some(name.into()),
            sha256: None,
            loaded_at: None,
            error: None,
        }
    }

    fn file(name: &str, state: ItemState) -> FileReport {
        FileReport { file: name.into(), state, error: None, names: vec![name.into()], includes: Vec::new() }
    }

    fn report(profiles: Vec<ProfileReport>, files: Vec<FileReport>) -> Report {
        Report { last_sync: Some("now".into()), profiles, files }
    }

    #[test]
    fn the_file_follows_load_change_and_unload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apparmor-loader");
        let mut ff = FeatureFile::new(path.clone());
        let body = |p: &Path| {
            std::fs::read_to_string(p).unwrap().lines().filter(|l| !l.starts_with('#')).map(String::from).collect::<Vec<_>>()
        };
        ff.update(&report(
            vec![
                profile("payment-api", ItemState::Loaded, Some("enforce")),
                profile("docker-default", ItemState::Foreign, Some("enforce")),
            ],
            vec![file("payment-api", ItemState::Loaded)],
        ));
        assert_eq!(
            body(&path),
            [
                "apparmor.feature.node.kubernetes.io/all-profiles-loaded=true",
                "profile.apparmor.feature.node.kubernetes.io/payment-api=enforce"
            ]
        );
        // A second file that does not compile: the summary turns false, the loaded one stays.
        ff.update(&report(
            vec![profile("payment-api", ItemState::Loaded, Some("complain")), profile("x", ItemState::Failed, None)],
            vec![file("payment-api", ItemState::Loaded), file("x", ItemState::Failed)],
        ));
        assert_eq!(
            body(&path),
            [
                "apparmor.feature.node.kubernetes.io/all-profiles-loaded=false",
                "profile.apparmor.feature.node.kubernetes.io/payment-api=complain"
            ]
        );
        // Every file deleted and every profile unloaded: the file goes.
        ff.update(&report(vec![profile("docker-default", ItemState::Foreign, Some("enforce"))], vec![]));
        assert!(!path.exists());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no temp file left behind");
    }

    #[test]
    fn stale_and_orphaned_profiles_are_still_loaded_failed_ones_are_not() {
        let r = report(
            vec![
                profile("a", ItemState::Stale, Some("enforce")),
                profile("b", ItemState::Orphaned, Some("enforce")),
                profile("c", ItemState::Failed, None),
                profile("d", ItemState::Refused, Some("enforce")),
            ],
            vec![file("a", ItemState::Stale)],
        );
        let r = Readiness::of(&r);
        assert_eq!(r.loaded.iter().map(String::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert!(r.all_loaded, "a stale file keeps its last good version loaded");
    }

    #[test]
    fn a_missing_directory_is_not_an_error_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.d/apparmor-loader");
        let mut ff = FeatureFile::new(path.clone());
        let r = report(vec![profile("a", ItemState::Loaded, Some("enforce"))], vec![file("a", ItemState::Loaded)]);
        ff.update(&r);
        assert!(!path.exists());
        std::fs::create_dir(dir.path().join("features.d")).unwrap();
        ff.update(&r);
        assert!(path.exists());
    }

    #[test]
    fn the_file_stays_under_nfds_size_limit() {
        let names: Vec<String> = (0..2000).map(|i| format!("profile-with-a-rather-long-name-{i:04}")).collect();
        let readiness =
            Readiness { loaded: names.iter().cloned().collect(), desired: names.iter().cloned().collect(), all_loaded: true };
        let (text, _, dropped) = render(&readiness, &BTreeMap::new());
        let text = text.unwrap();
        assert!(text.len() <= NFD_MAX_FILE_SIZE);
        assert!(dropped > 0);
        assert!(text.contains("all-profiles-loaded=true\n"), "the summary is never the one left out");
    }
}
