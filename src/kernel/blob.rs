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

/// The bit of a header's version word that makes the kernel load the profile in complain
/// mode whatever its flags say; `apparmor_parser -C` sets it and changes nothing else (the
/// compiled output with and without `-C` differs only in these words).
pub const FORCE_COMPLAIN: u32 = 0x800;

/// The same policy with [`FORCE_COMPLAIN`] set in every profile's header.
pub fn force_complain(blob: &[u8]) -> Result<Vec<u8>, BlobError> {
    let mut out = blob.to_vec();
    for at in version_offsets(blob)? {
        let v = u32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]) | FORCE_COMPLAIN;
        out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Byte offsets of each header's version value.
fn version_offsets(blob: &[u8]) -> Result<Vec<usize>, BlobError> {
    let mut r = Reader { b: blob, pos: 0 };
    let mut out = Vec::new();
    while r.pos < blob.len() {
        if r.name()? != "version" || r.u8()? != 2 {
            return Err(r.err("expected the version header"));
        }
        out.push(r.pos);
        r.u32()?;
        skip_profile(&mut r)?;
    }
    Ok(out)
}

/// Skips an optional namespace and one profile struct.
fn skip_profile(r: &mut Reader<'_>) -> Result<(), BlobError> {
    let mut n = r.name()?;
    if n == "namespace" {
        if r.u8()? != 5 {
            return Err(r.err("expected a string"));
        }
        r.string()?;
        n = r.name()?;
    }
    if n != "profile" || r.u8()? != 7 {
        return Err(r.err("expected a profile"));
    }
    let mut depth = 1usize;
    while depth > 0 {
        match r.u8()? {
            4 | 5 => drop(r.string()?),
            0 => drop(r.take(1)?),
            1 => drop(r.take(2)?),
            2 => drop(r.take(4)?),
            3 => drop(r.take(8)?),
            6 => {
                let n = r.u32()? as usize;
                r.take(n)?;
            }
            7 => depth += 1,
            8 => depth -= 1,
            9 | 10 | 12 => {}
            11 => drop(r.u16()?),
            _ => return Err(r.err("unknown entry type")),
        }
    }
    Ok(())
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
        let mode = if version & FORCE_COMPLAIN != 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/blobs").join(name)).unwrap()
    }

    /// `apparmor_parser -C` output is the plain output with the complain bit set in every
    /// header (Debian's 3.0.8 parser, `-Q -T -S` with and without `-C`).
    #[test]
    fn force_complain_equals_the_parsers_complain_output() {
        for name in ["complain-pair-one", "complain-pair-multi"] {
            let enforce = fixture(&format!("{name}.enforce.bin"));
            let complain = fixture(&format!("{name}.complain.bin"));
            assert_eq!(force_complain(&enforce).unwrap(), complain, "{name}");
            assert!(parse(&complain).unwrap().iter().all(|p| p.mode == Mode::Complain), "{name}");
        }
        let plain = parse(&fixture("complain-pair-multi.enforce.bin")).unwrap();
        let modes: Vec<_> = plain.iter().map(|p| (p.name.as_str(), p.mode.clone())).collect();
        assert_eq!(
            modes,
            vec![
                ("/usr/bin/foo", Mode::Complain),
                ("docker-default", Mode::Enforce),
                ("docker-default//child", Mode::Enforce),
                ("docker-default//hat", Mode::Enforce)
            ]
        );
    }
}
