//! aa-logprof without the dialogue: the profile rules that would allow a set of recorded denials.
//!
//! Pure: records in, a list of rules out, printed as a patch-like list for a person to review and commit.
//! It never writes a profile. The rules are deliberately narrow (one path per rule unless asked to
//! collapse a directory, `ix` rather than an unconfined exec) because every line widens a profile.
//!
//! Every rule says how far the records behind it can be trusted ([`Origin`]): a rule only unproven
//! lines support is printed with `?` instead of `+`; userspace-reported records (USER_AVC, a process's
//! claim) are left out unless [`SuggestOptions::trust_userspace`], and then marked the same way.

use super::record::{AuditRecord, Decision, Origin};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

mod rule;
pub use rule::capability_name;
use rule::{FilePerms, Rule, classify, quote_path};

/// Settings of [`suggest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuggestOptions {
    /// When set, this many (or more) plain file rules with the same permissions in one directory are
    /// replaced by one `DIR/* PERMS,` rule. Off by default: it allows files nobody asked for. Only
    /// rules the kernel's records support are collapsed.
    pub collapse_threshold: Option<usize>,
    /// Also turn userspace-reported records (USER_AVC: what a process claims) into rules. Off by
    /// default: any process with CAP_AUDIT_WRITE can send them.
    #[serde(default)]
    pub trust_userspace: bool,
}

/// How many records of each origin are behind a rule (or an input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Support {
    /// Records of [`Origin::Kernel`]: provably the kernel's.
    pub kernel: u64,
    /// From lines whose writer cannot be shown.
    pub unproven: u64,
    /// Records of [`Origin::Userspace`]: a process's claim, such as a USER_AVC.
    pub userspace: u64,
}

impl Support {
    /// Counts one record of origin `o`.
    pub fn add(&mut self, o: Origin) {
        *match o {
            Origin::Kernel => &mut self.kernel,
            Origin::Unproven => &mut self.unproven,
            Origin::Userspace => &mut self.userspace,
        } += 1;
    }

    fn merge(&mut self, o: Support) {
        self.kernel += o.kernel;
        self.unproven += o.unproven;
        self.userspace += o.userspace;
    }

    /// Records of all three origins together.
    pub fn total(&self) -> u64 {
        self.kernel + self.unproven + self.userspace
    }

    /// The strongest origin among the records (kernel, else unproven, else userspace).
    pub fn trust(&self) -> Origin {
        if self.kernel > 0 {
            Origin::Kernel
        } else if self.unproven > 0 {
            Origin::Unproven
        } else {
            Origin::Userspace
        }
    }
}

/// The kind of a suggested rule; also its sort order in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// `capability NAME,`
    Capability,
    /// `network FAMILY TYPE,`
    Network,
    /// `signal (...) ...,` / `ptrace (...) ...,`
    Peer,
    /// `PATH PERMS,`
    File,
}

/// One rule to add, with how many records it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// What sort of rule.
    pub kind: RuleKind,
    /// The rule text, ending with `,` (e.g. `/etc/hosts r,`).
    pub rule: String,
    /// How many records this rule would have allowed.
    pub count: u64,
    /// Advice printed next to the rule (alternatives to consider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The strongest origin among the records behind the rule: `kernel` unless every one of them is
    /// `unproven` (a line user space could have written) or `userspace` (a process's report).
    pub trust: Origin,
    /// The records behind the rule, by origin.
    pub support: Support,
}

/// Records no rule was generated for, grouped by reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Why (e.g. `operation="mount" has no rule generator`).
    pub reason: String,
    /// How many records were left out for this reason: at least 1.
    pub count: u64,
}

/// The result of [`suggest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestions {
    /// The profile the rules are for.
    pub profile: String,
    /// Records of that profile that were considered (denied, complain-mode allowed, killed).
    pub considered: u64,
    /// Of those, how many were complain-mode allowances.
    pub allowed: u64,
    /// The rules, sorted: capabilities, network, peer rules, then file rules by path.
    pub rules: Vec<Suggestion>,
    /// What was left out and why.
    pub skipped: Vec<Skipped>,
    /// Records of the profile left out because a process reported them (USER_AVC); not in `considered`.
    #[serde(default)]
    pub userspace_ignored: u64,
    /// Where the records came from and what each input proves (the caller fills it in).
    #[serde(default)]
    pub inputs: Vec<InputSummary>,
}

/// One input of `suggest` (a saved file, or the live stream) and how far its records can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSummary {
    /// The file, or `live`.
    pub input: String,
    /// Its format (`kmsg`, `audit-log`, `text`, ..., `netlink`) and what that proves.
    pub format: String,
    /// What the format proves, in words.
    pub proves: String,
    /// Its AppArmor records (all profiles), by origin.
    pub records: Support,
    /// True when a line broke the format the file started with, so none of it counts as kernel-made.
    #[serde(default)]
    pub demoted: bool,
}

/// Builds the rules that would allow `records` of `profile`. Records of other profiles (including
/// children `profile//child`, which need rules in their own block) are ignored or reported as skipped,
/// with one exception: a complain-mode learning profile `profile//null-PATH` reading PATH itself (an
/// interpreter reading the script `profile` exec'd) adds `r` to the `PATH ix` rule suggested for that exec.
/// Userspace-reported records count only in `userspace_ignored`, unless `opts.trust_userspace`.
pub fn suggest(profile: &str, records: &[AuditRecord], opts: &SuggestOptions) -> Suggestions {
    let mut b = Builder::new(profile);
    // Reads of a script by its interpreter under a learning profile: (globbed path, record).
    let mut script_reads: Vec<(String, &AuditRecord)> = Vec::new();
    for rec in records {
        if !matches!(rec.decision, Decision::Denied | Decision::Allowed | Decision::Killed) {
            continue;
        }
        let Some(p) = rec.profile.as_deref() else { continue };
        let child = p.strip_prefix(profile).and_then(|rest| rest.strip_prefix("//"));
        if p != profile && child.is_none() {
            continue;
        }
        if rec.origin == Origin::Userspace && !opts.trust_userspace {
            b.userspace_ignored += 1;
            continue;
        }
        match child {
            Some(child) => {
                if let Some(path) = b.child(p, child, rec) {
                    script_reads.push((path, rec));
                }
            }
            None => b.take(rec),
        }
    }
    for (path, rec) in script_reads {
        b.join_script_read(path, rec);
    }
    b.finish(opts)
}

/// Why a learning profile's record is not turned into a rule.
fn learning(p: &str) -> String {
    format!(
        "belongs to the complain-mode learning profile {p:?} of a program exec'd without a rule \
         (under an ix rule its accesses are logged for this profile)"
    )
}

/// The rules being built for one profile.
struct Builder {
    profile: String,
    considered: u64,
    allowed: u64,
    userspace_ignored: u64,
    /// rule text → (records behind it, note)
    rules: BTreeMap<(RuleKind, String), (Support, Option<String>)>,
    /// globbed path → (perms, records behind it)
    files: BTreeMap<String, (FilePerms, Support)>,
    skipped: BTreeMap<String, u64>,
}

impl Builder {
    fn new(profile: &str) -> Self {
        Builder {
            profile: profile.to_owned(),
            considered: 0,
            allowed: 0,
            userspace_ignored: 0,
            rules: BTreeMap::new(),
            files: BTreeMap::new(),
            skipped: BTreeMap::new(),
        }
    }

    fn skip(&mut self, reason: String) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    fn count(&mut self, rec: &AuditRecord) {
        self.considered += 1;
        if rec.decision == Decision::Allowed {
            self.allowed += 1;
        }
    }

    /// A record of the profile itself.
    fn take(&mut self, rec: &AuditRecord) {
        self.count(rec);
        match classify(rec) {
            Ok(Rule::Simple(kind, text)) => self.rules.entry((kind, text)).or_default().0.add(rec.origin),
            Ok(Rule::File(path, perms)) => {
                let e = self.files.entry(path).or_default();
                e.0 = e.0.union(perms);
                e.1.add(rec.origin);
            }
            Err(reason) => self.skip(reason),
        }
    }

    /// A record of the child `p` (`PROFILE//child`): returns the globbed path of a script read by its
    /// interpreter under a learning profile, to join its exec rule later; skips anything else.
    fn child(&mut self, p: &str, child: &str, rec: &AuditRecord) -> Option<String> {
        // Complain mode runs a program exec'd without a rule under a learning profile named
        // `PROFILE//null-PATH`. If that program opens PATH itself for reading, PATH is a script read by
        // its interpreter: under the `PATH ix` rule suggested for the exec it runs in PROFILE, and the
        // interpreter needs `r` on PATH (the kernel loads an exec'd binary without `r`, but an
        // interpreter opens its script like any file).
        let Some(exe) = child.strip_prefix("null-") else {
            self.skip(format!("belongs to child profile {p:?} (suggest for that name)"));
            return None;
        };
        if rec.name.as_deref() == Some(exe) {
            if let Ok(Rule::File(path, perms)) = classify(rec) {
                if perms == (FilePerms { r: true, ..FilePerms::default() }) {
                    return Some(path);
                }
            }
        }
        self.skip(learning(p));
        None
    }

    /// A script read joins the exec rule for the script (`PATH rix`); without one it is only reported.
    fn join_script_read(&mut self, path: String, rec: &AuditRecord) {
        match self.files.get_mut(&path) {
            Some(e) if e.0.x => {
                e.0.r = true;
                e.1.add(rec.origin);
                self.count(rec);
            }
            _ => self.skip(learning(rec.profile.as_deref().unwrap_or_default())),
        }
    }

    fn finish(mut self, opts: &SuggestOptions) -> Suggestions {
        if let Some(threshold) = opts.collapse_threshold {
            collapse(&mut self.files, threshold.max(2));
        }
        for (path, (perms, support)) in self.files {
            let note = perms.x.then(|| "or px (run under its own profile) / cx (a child profile) instead of ix".to_owned());
            self.rules.insert((RuleKind::File, format!("{} {},", quote_path(&path), perms.render())), (support, note));
        }
        let rules = self.rules.into_iter().map(|((kind, rule), (support, note))| Suggestion {
            kind,
            rule,
            count: support.total(),
            note,
            trust: support.trust(),
            support,
        });
        Suggestions {
            profile: self.profile,
            considered: self.considered,
            allowed: self.allowed,
            rules: rules.collect(),
            skipped: self.skipped.into_iter().map(|(reason, count)| Skipped { reason, count }).collect(),
            userspace_ignored: self.userspace_ignored,
            inputs: Vec::new(),
        }
    }
}

/// Replaces groups of `threshold`+ plain files with equal permissions in one directory by `DIR/*`.
/// Exec permissions are never collapsed: widening what may run is a decision for a person. Nor are rules
/// without a kernel record behind them: forged lines must not widen a rule to a whole directory.
fn collapse(files: &mut BTreeMap<String, (FilePerms, Support)>, threshold: usize) {
    let mut groups: BTreeMap<(String, FilePerms), Vec<String>> = BTreeMap::new();
    for (path, (perms, support)) in files.iter() {
        if perms.x || path.ends_with('/') || support.trust() != Origin::Kernel {
            continue;
        }
        if let Some((dir, _)) = path.rsplit_once('/') {
            groups.entry((dir.to_owned(), *perms)).or_default().push(path.clone());
        }
    }
    for ((dir, perms), members) in groups {
        if members.len() < threshold {
            continue;
        }
        let mut support = Support::default();
        for m in &members {
            if let Some((_, s)) = files.remove(m) {
                support.merge(s);
            }
        }
        let e = files.entry(format!("{dir}/*")).or_default();
        e.0 = e.0.union(perms);
        e.1.merge(support);
    }
}

impl Suggestions {
    /// The patch-like listing a person reviews:
    ///
    /// ```text
    /// # 5 records of profile "web" (1 allowed in complain mode). Review, add to the profile, commit.
    /// # input live (netlink): the record type is the kernel's: 5 kernel-made, 0 unproven, 1 userspace-reported
    /// +  capability net_raw,   # 1 denial
    /// +  /etc/shadow r,        # 3 denials
    /// ?  /etc/hosts r,         # 1 denial; UNPROVEN: ...
    /// ```
    ///
    /// A rule no kernel-made record supports starts with `?` and says why.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "# {} record{} of profile {:?}", self.considered, plural(self.considered), self.profile);
        if self.allowed > 0 {
            let _ = write!(s, " ({} allowed in complain mode)", self.allowed);
        }
        s.push_str(". Review each line, add it to the profile, commit. Nothing was written.\n");
        self.render_inputs(&mut s);
        if self.rules.is_empty() {
            s.push_str("# no rules to suggest\n");
        }
        if self.rules.iter().any(|r| r.rule.contains("@{pid}") || r.rule.contains("@{tid}")) {
            s.push_str("# @{pid} and @{tid} are defined by include <tunables/global>.\n");
        }
        if self.rules.iter().any(|r| r.trust != Origin::Kernel) {
            s.push_str("# '?' marks a rule no kernel-made record supports: a process may have forged it. Check it first.\n");
        }
        let width = self.rules.iter().map(|r| r.rule.chars().count()).max().unwrap_or(0).min(60);
        for r in &self.rules {
            let mark = if r.trust == Origin::Kernel { '+' } else { '?' };
            let _ = write!(s, "{mark}  {:<width$}  # {} denial{}", r.rule, r.count, plural(r.count));
            match r.trust {
                Origin::Kernel => {}
                Origin::Unproven => s.push_str("; UNPROVEN: only lines user space could have written support it"),
                Origin::Userspace => s.push_str("; USERSPACE-REPORTED: only USER_AVC records a process sent support it"),
            }
            if let Some(n) = &r.note {
                let _ = write!(s, "; {n}");
            }
            s.push('\n');
        }
        for k in &self.skipped {
            let _ = writeln!(s, "#  skipped {} record{}: {}", k.count, plural(k.count), k.reason);
        }
        if self.userspace_ignored > 0 {
            let n = self.userspace_ignored;
            let _ = writeln!(
                s,
                "#  ignored {n} userspace-reported record{} (USER_AVC: a process's claim, not a kernel decision); --trust-userspace uses them",
                plural(n)
            );
        }
        s
    }

    /// One line per input: what its format proves and its records by origin.
    fn render_inputs(&self, s: &mut String) {
        for i in &self.inputs {
            let r = &i.records;
            let _ = write!(
                s,
                "# input {} ({}; {}): {} kernel-made, {} unproven, {} userspace-reported AppArmor record{}",
                i.input,
                i.format,
                i.proves,
                r.kernel,
                r.unproven,
                r.userspace,
                plural(r.total())
            );
            if i.demoted {
                s.push_str("; a line in it does not fit its format, so none of it counts as kernel-made");
            }
            s.push('\n');
        }
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests;
