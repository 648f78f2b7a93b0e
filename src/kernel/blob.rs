//! Reader of compiled (binary) AppArmor policy, as `apparmor_parser` writes it for the kernel.
//! PLACEHOLDER: replaced by the full version from the `blob` branch.

use sha1::{Digest, Sha1};

use crate::listing::Mode;

/// One profile of a compiled file, as the kernel will see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobProfile {
    /// Full name as the kernel lists it (`a`, `a//child`).
    pub name: String,
    /// The policy namespace, when the profile declares one.
    pub namespace: Option<String>,
    /// The mode the kernel will list.
    pub mode: Mode,
    /// The kernel's `policy/profiles/*/sha1` for it.
    pub sha1: String,
}

/// The blob is not valid binary policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid binary policy at byte {offset}: {what}")]
pub struct BlobError {
    /// Where.
    pub offset: usize,
    /// What.
    pub what: &'static str,
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn err(&self, what: &'static str) -> BlobError {
        BlobError { offset: self.pos, what }
    }
    fn take(&mut self, n: usize) -> Result<&[u8], BlobError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(self.err("truncated"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, BlobError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, BlobError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, BlobError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn string(&mut self) -> Result<String, BlobError> {
        let n = self.u16()? as usize;
        let at = self.pos;
        let s = self.take(n)?;
        let err = |what| BlobError { offset: at, what };
        let s = s.strip_suffix(&[0]).ok_or(err("string without NUL"))?;
        String::from_utf8(s.to_vec()).map_err(|_| err("string not UTF-8"))
    }
    fn name(&mut self) -> Result<String, BlobError> {
        if self.u8()? != 4 {
            return Err(self.err("expected a name"));
        }
        self.string()
    }
}

/// Every profile of a compiled file.
pub fn parse(blob: &[u8]) -> Result<Vec<BlobProfile>, BlobError> {
    let mut r = Reader { b: blob, pos: 0 };
    let mut out = Vec::new();
    while r.pos < blob.len() {
        if r.name()? != "version" || r.u8()? != 2 {
            return Err(r.err("expected the version header"));
        }
        let version = r.u32()?;
        let mut at = r.pos;
        let mut n = r.name()?;
        let mut namespace = None;
        if n == "namespace" {
            if r.u8()? != 5 {
                return Err(r.err("expected a string"));
            }
            namespace = Some(r.string()?);
            at = r.pos;
            n = r.name()?;
        }
        if n != "profile" || r.u8()? != 7 {
            return Err(r.err("expected a profile"));
        }
        let start = at;
        if r.u8()? != 5 {
            return Err(r.err("expected the profile name"));
        }
        let name = r.string()?;
        let mut depth = 1usize;
        let mut mode_value = None;
        let mut last_name = String::new();
        let mut in_flags = false;
        let mut flag_index = 0;
        while depth > 0 {
            match r.u8()? {
                4 => {
                    last_name = r.string()?;
                    continue;
                }
                0 => drop(r.take(1)?),
                1 => drop(r.take(2)?),
                2 => {
                    let v = r.u32()?;
                    if in_flags && depth == 2 {
                        if flag_index == 1 {
                            mode_value = Some(v);
                        }
                        flag_index += 1;
                    }
                }
                3 => drop(r.take(8)?),
                5 => drop(r.string()?),
                6 => {
                    let n = r.u32()? as usize;
                    r.take(n)?;
                }
                7 => {
                    depth += 1;
                    in_flags = depth == 2 && last_name == "flags";
                    flag_index = 0;
                }
                8 => {
                    depth -= 1;
                    in_flags = false;
                }
                9 | 10 | 12 => {}
                11 => drop(r.u16()?),
                _ => return Err(r.err("unknown entry type")),
            }
            last_name.clear();
        }
        let mut h = Sha1::new();
        h.update(version.to_le_bytes());
        h.update(&blob[start..r.pos]);
        let mode = if version & 0x800 != 0 {
            Mode::Complain
        } else {
            match mode_value {
                Some(0) | None => Mode::Enforce,
                Some(1) => Mode::Complain,
                Some(2) => Mode::Kill,
                Some(3) => Mode::Unconfined,
                Some(4) => Mode::User,
                Some(_) => return Err(r.err("unknown profile mode")),
            }
        };
        out.push(BlobProfile { name, namespace, mode, sha1: crate::scan::hex(&h.finalize()) });
    }
    Ok(out)
}
