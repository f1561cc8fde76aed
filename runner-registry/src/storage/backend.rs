//! [`Backend`]: the storage a server was started on, as one [`Storage`] trait object.

use std::path::Path;
use std::sync::Arc;

use runner_core::Result;

use super::directory::Directory;
use super::shared::SharedStore;
use super::traits::Storage;

/// A registry server's storage: a [`Directory`] on one machine, or a [`SharedStore`]
/// (PostgreSQL and an object store) for any number of replicas. It dereferences to
/// [`Storage`], whose calls mean the same on both.
///
/// ```no_run
/// # async fn run() -> runner_core::Result<()> {
/// use runner_registry::{Backend, NewToken, Right};
///
/// let backend = Backend::directory(std::path::Path::new("/var/lib/registry"))?;
/// let ci = NewToken {
///     organization: "acme".into(),
///     name: "ci".into(),
///     right: Right::Write,
///     repositories: vec!["iris".into(), "vision-*".into()],
///     expires_in: Some(std::time::Duration::from_secs(90 * 86_400)),
/// };
/// let (secret, token) = backend.create_token(&ci).await?;
/// println!("{secret} (id {})", token.id);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Backend(Arc<dyn Storage>);

impl Backend {
    /// The directory backend at `data`, for the server that owns it: what an earlier
    /// run left behind is swept first.
    pub fn directory(data: &Path) -> Result<Backend> {
        Ok(Backend(Arc::new(Directory::serve(data)?)))
    }

    /// A directory registry opened beside a server and registrations that may be running
    /// (`gc`, `verify`, `token`): what they are writing in `tmp/` is left alone.
    pub fn directory_beside_others(data: &Path) -> Result<Backend> {
        Ok(Backend(Arc::new(Directory::beside_others(data)?)))
    }

    /// The shared backend.
    pub fn shared(store: SharedStore) -> Backend {
        Backend(Arc::new(store))
    }
}

impl std::ops::Deref for Backend {
    type Target = dyn Storage;

    fn deref(&self) -> &(dyn Storage + 'static) {
        self.0.as_ref()
    }
}
