//! sha256 of files, read in 1 MiB blocks: the one loop every upload, download and check
//! goes through.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result};

pub(crate) const BUFFER: usize = 1 << 20;

/// sha256 (lowercase hex) and size of a file, read in 1 MiB blocks.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64)> {
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

/// Whether reading all of `file` (`size` bytes) again would cost no disk read: one byte
/// of each of up to 64 evenly spaced pages is read with `RWF_NOWAIT`, which fails rather
/// than wait for the disk. A file just written or just read is; a checkpoint written
/// long ago usually is not. Where that cannot be told, true: the file is named first, as
/// before unnamed uploads, so content the server has is never sent again.
#[cfg(all(target_os = "linux", feature = "http-client"))]
pub(crate) fn in_page_cache(file: &File, size: u64) -> bool {
    use rustix::io::{preadv2, ReadWriteFlags};
    let step = (size / 64).max(4096);
    let mut byte = [0u8; 1];
    (0..size).step_by(step as usize).all(|offset| {
        let mut buffers = [std::io::IoSliceMut::new(&mut byte)];
        matches!(preadv2(file, &mut buffers, offset, ReadWriteFlags::NOWAIT), Ok(1))
    })
}

/// See the Linux version: elsewhere nothing tells, and the answer is true.
#[cfg(all(not(target_os = "linux"), feature = "http-client"))]
pub(crate) fn in_page_cache(_file: &File, _size: u64) -> bool {
    true
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", feature = "http-client"))]
    fn a_file_dropped_from_the_page_cache_is_told_apart_from_one_just_read() {
        use super::{hash_file, in_page_cache, File};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, vec![7u8; 4 << 20]).unwrap();
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        assert!(in_page_cache(&file, 4 << 20), "just written");
        // Written back above, so the kernel can drop its pages when asked.
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        assert!(!in_page_cache(&file, 4 << 20), "dropped");
        hash_file(&path).unwrap();
        assert!(in_page_cache(&file, 4 << 20), "read again");
    }
}
