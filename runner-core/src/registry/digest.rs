//! sha256 of files, read in 1 MiB blocks: the one loop every upload, download and check
//! goes through.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

pub(crate) const BUFFER: usize = 1 << 20;

/// sha256 (lowercase hex) and size of a file, read in 1 MiB blocks.
pub fn hash_file(path: &Path) -> Result<(String, u64)> {
    copy_hashing(path, &mut std::io::sink())
}

/// Copies `from` into `to`, returning the sha256 and size of what was copied.
pub(crate) fn copy_hashing(from: &Path, to: &mut impl Write) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let size = feed(from, &mut hasher, to)?;
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg_attr(not(feature = "http-client"), allow(dead_code))]
/// Reads `from` in 1 MiB blocks into `hasher` and `to`; returns the bytes read.
pub(crate) fn feed(from: &Path, hasher: &mut Sha256, to: &mut impl Write) -> Result<u64> {
    let mut file = File::open(from).ctx("opening", from)?;
    let mut buffer = vec![0; BUFFER];
    let mut size = 0;
    loop {
        let n = file.read(&mut buffer).ctx("reading", from)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        to.write_all(&buffer[..n]).ctx("writing a copy of", from)?;
        size += n as u64;
    }
    Ok(size)
}
