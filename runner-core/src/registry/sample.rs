//! Samples of large content: the sha256 of its size and of 16 windows of 64 KiB spread
//! over it, first and last bytes included. A client that has not hashed a large file
//! reads only its sample (1 MiB) and asks the server whether its organization holds
//! content with that sample (`HEAD .../blobs?sample=`). When not, the content is new: it
//! is sent unnamed and hashed on the way, so the file is read once. When so, the file is
//! most likely stored already: it is hashed first and named, and nothing is sent.
//!
//! The server computes the sample of what it receives with a [`Sampler`] (fed as the
//! bytes stream in, their total known from `Content-Length`), and the client with
//! [`sample_file`]; both give the same answer for the same bytes.
//!
//! ```
//! use runner_core::registry::sample::{sample_bytes, Sampler, MIN_SIZE};
//!
//! let content: Vec<u8> = (0..MIN_SIZE).map(|i| (i % 251) as u8).collect();
//! let mut sampler = Sampler::new(MIN_SIZE).expect("large enough to be sampled");
//! for chunk in content.chunks(100_000) {
//!     sampler.update(chunk);
//! }
//! assert_eq!(sampler.finish(), sample_bytes(&content));
//! ```

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

/// Smallest content that is sampled: smaller content is hashed whole before it is sent.
pub const MIN_SIZE: u64 = 8 << 20;
/// Windows read per sample.
const WINDOWS: u64 = 16;
/// Bytes per window.
const WINDOW: u64 = 64 << 10;
/// Tells this sampling apart from any later one.
const VERSION: &[u8] = b"runner-sample-1";

/// Where the windows of content of `size` bytes start: evenly spaced, the first at 0 and
/// the last ending at `size` (disjoint, since `size >= MIN_SIZE`).
fn starts(size: u64) -> impl Iterator<Item = u64> {
    (0..WINDOWS).map(move |i| i * (size - WINDOW) / (WINDOWS - 1))
}

fn hasher(size: u64) -> Sha256 {
    let mut hasher = Sha256::new();
    hasher.update(VERSION);
    hasher.update(size.to_le_bytes());
    hasher
}

/// The sample (lowercase hex) of `file`, `size` bytes long: 16 reads of 64 KiB. `None`
/// when the file is smaller than [`MIN_SIZE`].
pub fn sample_file(file: &File, size: u64) -> io::Result<Option<String>> {
    if size < MIN_SIZE {
        return Ok(None);
    }
    let mut hasher = hasher(size);
    let mut window = vec![0; WINDOW as usize];
    let mut reader = file;
    for start in starts(size) {
        reader.seek(SeekFrom::Start(start))?;
        reader.read_exact(&mut window)?;
        hasher.update(&window);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// The sample of content held in memory; `None` when it is smaller than [`MIN_SIZE`].
pub fn sample_bytes(content: &[u8]) -> Option<String> {
    let mut sampler = Sampler::new(content.len() as u64)?;
    sampler.update(content);
    sampler.finish()
}

/// Computes the sample of content as it streams by, its size known beforehand.
#[derive(Debug, Clone)]
pub struct Sampler {
    size: u64,
    seen: u64,
    hasher: Sha256,
}

impl Sampler {
    /// A sampler for content of `size` bytes; `None` when it is smaller than [`MIN_SIZE`].
    pub fn new(size: u64) -> Option<Sampler> {
        (size >= MIN_SIZE).then(|| Sampler { size, seen: 0, hasher: hasher(size) })
    }

    /// Feeds the next bytes of the content.
    pub fn update(&mut self, bytes: &[u8]) {
        let (from, to) = (self.seen, self.seen + bytes.len() as u64);
        for start in starts(self.size) {
            let (a, b) = (start.max(from), (start + WINDOW).min(to));
            if a < b {
                self.hasher.update(&bytes[(a - from) as usize..(b - from) as usize]);
            }
        }
        self.seen = to;
    }

    /// The sample, or `None` when the bytes fed were not the size announced.
    pub fn finish(self) -> Option<String> {
        (self.seen == self.size).then(|| hex::encode(self.hasher.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::{sample_bytes, sample_file, Sampler, MIN_SIZE, WINDOW};

    fn content(size: u64) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn a_file_and_its_bytes_streamed_in_any_chunks_give_one_sample() {
        let size = MIN_SIZE + 12_345;
        let bytes = content(size);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, &bytes).unwrap();
        let from_file = sample_file(&std::fs::File::open(&path).unwrap(), size).unwrap();
        assert!(from_file.is_some());
        for chunk in [1usize, 4093, 65_536, 1 << 20, size as usize] {
            let mut sampler = Sampler::new(size).unwrap();
            bytes.chunks(chunk).for_each(|c| sampler.update(c));
            assert_eq!(sampler.finish(), from_file, "chunks of {chunk}");
        }
        assert_eq!(sample_bytes(&bytes), from_file);
    }

    #[test]
    fn a_change_in_a_window_or_in_the_size_changes_the_sample_and_a_short_stream_has_none() {
        let mut bytes = content(MIN_SIZE * 2);
        let before = sample_bytes(&bytes).unwrap();
        // The last byte is in the last window; a byte between windows is not looked at.
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_ne!(sample_bytes(&bytes).unwrap(), before);
        bytes[last] ^= 1;
        bytes[WINDOW as usize + 10] ^= 1;
        assert_eq!(sample_bytes(&bytes).unwrap(), before, "outside every window");
        bytes.push(0);
        assert_ne!(sample_bytes(&bytes).unwrap(), before, "one byte longer");
        assert_eq!(sample_bytes(&bytes[..MIN_SIZE as usize - 1]), None, "too small to be sampled");
        let mut short = Sampler::new(MIN_SIZE).unwrap();
        short.update(&bytes[..MIN_SIZE as usize - 1]);
        assert_eq!(short.finish(), None, "fewer bytes than announced");
    }
}
