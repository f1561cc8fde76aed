//! The client reads a file once: a large file whose sample the server does not know is
//! new, and is sent unnamed and hashed on the way; one whose sample it knows is hashed
//! and named, and not sent; a download is checked as it arrives and not read back. Alone
//! in its binary, so that the bytes this process reads from files (`/proc/self/io`) are
//! the client's own.

#![allow(missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{sha256_hex, Scale, Scaler, Server, BIN};
use runner_core::{register_model, HttpRegistry, Loaded, Registry};

/// Bytes this process has read through `read` and its kind so far.
fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    let line = io.lines().find(|l| l.starts_with("rchar:")).unwrap();
    line["rchar:".len()..].trim().parse().unwrap()
}

/// Written back to disk, older than the hash cache's racy window, and dropped from the
/// page cache: what a checkpoint saved long ago looks like.
fn cold(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60)).unwrap();
    file.sync_all().unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

#[test]
fn files_are_read_once_to_upload_and_downloads_are_checked_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command.args(["serve", "--no-auth", "--addr", "127.0.0.1:0", "--data"]).arg(dir.path().join("data"));
    command.stderr(Stdio::null());
    let server = Server::spawn(command);
    let registry = HttpRegistry::with_cache(&server.url, None, &dir.path().join("cache")).unwrap();
    let size = 48u64 << 20;
    let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let artifact = dir.path().join("weights.bin");
    std::fs::write(&artifact, &content).unwrap();
    cold(&artifact);
    let register = |name: &str| {
        register_model::<Scaler>(name)
            .model(Scale(2.0))
            .artifact(artifact.to_str().unwrap(), "weights.bin")
            .register(&registry)
            .unwrap()
    };

    let (read, sent) = (bytes_read(), registry.bytes_sent());
    let first = register("cold");
    let (read, sent) = (bytes_read() - read, registry.bytes_sent() - sent);
    assert!(sent >= size && sent < size + 4096, "sent once (and the small model file): {sent} bytes");
    assert!(read >= size && read < size + size / 4, "a cold file is read once: {read} bytes read for {size}");
    let file = first.manifest.files.iter().find(|f| f.path.ends_with("weights.bin")).unwrap();
    assert_eq!(file.sha256, sha256_hex(&content), "named by the server's hash, checked against the client's");

    // A cold download is checked on the way in (`/proc/self/io` counts no socket reads),
    // and not read back from the disk; a later load reads nothing once the volume's hash
    // is remembered.
    let reader = HttpRegistry::with_cache(&server.url, None, &dir.path().join("download")).unwrap();
    let read = bytes_read();
    let loaded = Loaded::<Scaler>::load(&reader, &"cold:1".parse().unwrap()).unwrap();
    let read = bytes_read() - read;
    assert!(read < size / 4, "downloaded and checked in one pass, not read again: {read} bytes read");
    let weights = loaded.volume().join("weights.bin");
    assert!(std::fs::read(&weights).unwrap() == content);
    // As if the download were minutes old (a hash recorded right after a write is not
    // trusted): the next load hashes the volume once and remembers it.
    let volume_file = std::fs::File::options().write(true).open(&weights).unwrap();
    volume_file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60)).unwrap();
    Loaded::<Scaler>::load(&reader, &"cold:1".parse().unwrap()).unwrap();
    let read = bytes_read();
    let again = Loaded::<Scaler>::load(&reader, &"cold:1".parse().unwrap()).unwrap();
    assert!(bytes_read() - read < size / 4, "a warm load reads nothing of the file");
    assert_eq!(again.run(1.5).unwrap(), 3.0);
    // Written into since: the volume is checked again, and the change is caught.
    std::fs::write(&weights, b"tampered").unwrap();
    let error = Loaded::<Scaler>::load(&reader, &"cold:1".parse().unwrap()).unwrap_err();
    assert!(error.to_string().contains("sha256"), "{error}");

    // Remembered: the next registration asks by sha256 and sends nothing.
    let (read, sent) = (bytes_read(), registry.bytes_sent());
    register("cold");
    assert_eq!(registry.bytes_sent() - sent, 0, "unchanged content is not sent again");
    assert!(bytes_read() - read < size / 4, "nor read: its hash is remembered");

    // A copy just written, not remembered: its sample is known, so it is hashed first,
    // and the server, which has it, is asked and sent nothing.
    let copy = dir.path().join("copy.bin");
    std::fs::write(&copy, &content).unwrap();
    let (read, sent) = (bytes_read(), registry.bytes_sent());
    let id = registry.create_model("default", "warm").unwrap();
    let mut staging = registry.stage(&id).unwrap();
    let entry = staging.put_file("weights.bin", &copy, runner_core::FileOrigin::Artifact).unwrap();
    assert_eq!(entry.sha256, file.sha256);
    assert_eq!(registry.bytes_sent() - sent, 0, "the server had it: named first, not sent");
    assert!(bytes_read() - read >= size, "hashed before asking");

    // New content just written (in the page cache): its sample is unknown, so it is sent
    // unnamed and read once, where hashing it first would read it twice.
    let other: Vec<u8> = content.iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(&copy, &other).unwrap();
    let (read, sent) = (bytes_read(), registry.bytes_sent());
    let entry = staging.put_file("other.bin", &copy, runner_core::FileOrigin::Artifact).unwrap();
    let (read, sent) = (bytes_read() - read, registry.bytes_sent() - sent);
    assert_eq!(entry.sha256, sha256_hex(&other));
    assert_eq!(sent, size, "new content is sent once");
    assert!(read >= size && read < size + size / 4, "and read once: {read} bytes read for {size}");
}
