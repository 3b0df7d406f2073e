//! Access control: who may read and who may change the store.
//!
//! The socket is the first gate: its mode, owner and group (config keys
//! `socket_mode`, `socket_owner`, `socket_group`) decide who can connect at
//! all. Everyone who can connect may read (`GET`, `HEAD`). Any other method
//! changes something and needs a *writer*: a peer whose uid, as the kernel
//! reports it with `SO_PEERCRED` when the connection is accepted, is in
//! `access.writer_uids`, or whose primary gid is in `access.writer_gids`.
//! The daemon's own uid is always a writer, so a daemon running as an
//! unprivileged user can still be administered as that user. A peer whose
//! credentials cannot be read is a reader.
//!
//! A refusal is `403 OperatorOnly`: IMGAPI's code for an action reserved to
//! operators, which is what a writer is here. The check runs before routing,
//! so a reader learns nothing about routes it could not use anyway.
//!
//! Only the primary gid is checked: `SO_PEERCRED` carries no supplementary
//! groups, and looking them up per connection (NSS) would be slow and racy.

use crate::api::Peer;
use crate::config::Access;
use crate::error::{Error, Result};
use hyper::Method;

/// Whether `method` only reads.
pub fn is_read_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Whether `peer` may change the store under `access`.
pub fn is_writer(access: &Access, peer: &Peer) -> bool {
    let own = nix::unistd::geteuid().as_raw();
    match (peer.uid, peer.gid) {
        (Some(uid), _) if uid == own || access.writer_uids.contains(&uid) => true,
        (_, Some(gid)) => access.writer_gids.contains(&gid),
        _ => false,
    }
}

/// Refuses a request that writes from a peer that may only read.
///
/// # Errors
/// `OperatorOnly` (403), naming the peer and the config keys that would
/// allow it.
pub fn check(access: &Access, peer: &Peer, method: &Method) -> Result<()> {
    if is_read_only(method) || is_writer(access, peer) {
        return Ok(());
    }
    let who = match (peer.uid, peer.gid) {
        (Some(u), Some(g)) => format!("uid {u} (gid {g})"),
        _ => "a peer whose credentials cannot be read".to_string(),
    };
    Err(Error::OperatorOnly(format!(
        "{who} may only read (GET, HEAD); {method} needs a writer: add the uid to access.writer_uids or the gid to access.writer_gids"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid: Some(uid),
            gid: Some(gid),
            pid: None,
        }
    }

    #[test]
    fn readers_read_writers_write() {
        let own = nix::unistd::geteuid().as_raw();
        let other = own.wrapping_add(4242);
        let a = Access {
            writer_uids: vec![other.wrapping_add(1)],
            writer_gids: vec![777],
        };
        let reader = peer(other, 1000);
        assert!(check(&a, &reader, &Method::GET).is_ok());
        assert!(check(&a, &reader, &Method::HEAD).is_ok());
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let e = check(&a, &reader, &m).unwrap_err();
            assert_eq!(e.code(), "OperatorOnly");
            assert_eq!(e.status().as_u16(), 403);
            assert!(e.to_string().contains(&format!("uid {other}")), "{e}");
        }
        assert!(check(&a, &peer(other.wrapping_add(1), 1000), &Method::POST).is_ok());
        assert!(check(&a, &peer(other, 777), &Method::DELETE).is_ok());
        // The daemon's own uid always writes, whatever the lists say.
        let none = Access {
            writer_uids: vec![],
            writer_gids: vec![],
        };
        assert!(check(&none, &peer(own, 12345), &Method::PUT).is_ok());
        // Unknown credentials: read only.
        assert!(check(&a, &Peer::default(), &Method::GET).is_ok());
        assert!(check(&a, &Peer::default(), &Method::POST).is_err());
    }
}
