//! The registry browser: pages for people at `/`, over the same [`Backend`] as the API.
//!
//! | page | what |
//! |---|---|
//! | `GET /` | sign in with a token (or, without auth, the organizations) |
//! | `GET /orgs/{org}` | repositories: models, latest number, last change; searchable, paginated |
//! | `GET /orgs/{org}/{repo}` | models, newest first: status, size, runner, created, aliases; paginated |
//! | `GET /orgs/{org}/{repo}/{n}` | one model: its manifest laid out, its files, what changed since the previous number |
//! | `GET /orgs/{org}/{repo}/{n}/files/{path}` | download one file (HTTP Range works) |
//! | `GET`/`POST /orgs/{org}/{repo}/{n}/delete`, `/orgs/{org}/{repo}/delete` | confirm, then delete (admin tokens) |
//! | `GET /orgs/{org}/-/tokens`, `POST .../{id}/revoke` | the organization's tokens, never their secrets; revoke one (admin tokens) |
//! | `GET /orgs/{org}/-/audit` | the organization's newest changes, by whom, from where (admin tokens) |
//!
//! The token is kept in an `HttpOnly`, `SameSite=Strict` cookie, never in a URL. Forms
//! that change anything carry the session's CSRF token and must come from this server's
//! own pages (`Origin`); a read token sees no delete button, and the server refuses its
//! deletes anyway. Every name is escaped (maud), and the pages' Content-Security-Policy
//! allows no inline script.

//!
//! One file per concern: the session and sign-in (`session`), the pages that read
//! (`browse`), the pages that act (`actions`), the admins' pages (`admin`: tokens and
//! the audit log), and the route table (`routes`).

// A page step fails with the page to answer with: a `Response` is large for an `Err`,
// but it is answered at once, never passed along.
#[allow(clippy::result_large_err)]
mod actions;
#[allow(clippy::result_large_err)]
mod admin;
#[allow(clippy::result_large_err)]
mod browse;
mod routes;
#[allow(clippy::result_large_err)]
mod session;

pub(crate) use routes::routes;
