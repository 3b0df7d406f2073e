//! Access control: who may read and who may change the store.
//!
//! The socket is the first gate: its mode, owner and group (config keys
//! `socket_mode`, `socket_owner`, `socket_group`) decide who can connect at
//! all. Everyone who can connect may read (`GET`, `HEAD`). Any other method
//! changes something and needs a *writer*: a peer whose uid, as the kernel
//! reports it with `SO_PEERCRED` when the connection is accepted, is in
//! `access.writer_uids`, or whose primary gid or one of whose supplementary
//! groups is in `access.writer_gids`.
//! The daemon's own uid is always a writer, so a daemon running as an
//! unprivileged user can still be administered as that user. A peer whose
//! credentials cannot be read is a reader.
//!
//! A refusal is `403 OperatorOnly`: IMGAPI's code for an action reserved to
//! operators, which is what a writer is here. The check runs before routing,
//! so a reader learns nothing about routes it could not use anyway.
//!
//! Supplementary groups come from the kernel, never from a lookup by name
//! (NSS would be slow and racy): `SO_PEERGROUPS` on Linux (4.13 and later;
//! on an older kernel the list is empty and only the primary gid counts),
//! `getpeerucred` on illumos. Like `SO_PEERCRED`, they are the peer's
//! credentials when it connected.

use crate::config::Access;
use crate::error::{Error, Result};
use hyper::Method;
use std::sync::Arc;

/// Who is on the other end of the socket: uid, gid and pid from
/// SO_PEERCRED, supplementary groups from SO_PEERGROUPS (Linux) or the
/// peer's ucred (illumos), all as the kernel recorded them at connect time.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub pid: Option<i32>,
    pub groups: Arc<[u32]>,
}

/// Whether `method` only reads.
pub fn is_read_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Whether `peer` may change the store under `access`.
pub fn is_writer(access: &Access, peer: &Peer) -> bool {
    let own = nix::unistd::geteuid().as_raw();
    match (peer.uid, peer.gid) {
        (Some(uid), _) if uid == own || access.writer_uids.contains(&uid) => true,
        (_, Some(gid)) if access.writer_gids.contains(&gid) => true,
        _ => peer.groups.iter().any(|g| access.writer_gids.contains(g)),
    }
}

/// The supplementary groups of the process at the other end of `sock`, as
/// the kernel recorded them when it connected; empty when the kernel cannot
/// tell.
#[cfg(target_os = "linux")]
pub fn peer_groups(sock: &impl std::os::fd::AsRawFd) -> Vec<u32> {
    let fd = sock.as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of gid_t, and the kernel writes
        // at most `len` bytes and sets `len` to what it wrote or needs.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return groups;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        // ENOPROTOOPT: a kernel older than 4.13.
        return Vec::new();
    }
}

/// The supplementary groups of the process at the other end of `sock`, from
/// its ucred; empty when the kernel cannot tell.
#[cfg(any(target_os = "illumos", target_os = "solaris"))]
pub fn peer_groups(sock: &impl std::os::fd::AsRawFd) -> Vec<u32> {
    let mut cred: *mut libc::ucred_t = std::ptr::null_mut();
    // SAFETY: getpeerucred allocates the ucred it returns; it is freed below
    // once its groups have been copied out.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getpeerucred(sock.as_raw_fd(), &mut cred) != 0 {
            return Vec::new();
        }
        let mut list: *const libc::gid_t = std::ptr::null();
        let n = libc::ucred_getgroups(cred, &mut list);
        let groups = if n > 0 && !list.is_null() {
            std::slice::from_raw_parts(list, n as usize).to_vec()
        } else {
            Vec::new()
        };
        libc::ucred_free(cred);
        groups
    }
}

/// Elsewhere only the primary gid counts.
#[cfg(not(any(target_os = "linux", target_os = "illumos", target_os = "solaris")))]
pub fn peer_groups(_sock: &impl std::os::fd::AsRawFd) -> Vec<u32> {
    Vec::new()
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

    #[test]
    fn peer_groups_are_the_connecting_process_groups() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut want: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        let mut got = peer_groups(&a);
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want);
    }

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid: Some(uid),
            gid: Some(gid),
            pid: None,
            groups: Arc::from([]),
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
            assert_eq!(crate::api::error::status(&e).as_u16(), 403);
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
        // A supplementary group in writer_gids makes a writer.
        let mut member = peer(other, 1000);
        member.groups = Arc::from([5, 777]);
        assert!(check(&a, &member, &Method::POST).is_ok());
        member.groups = Arc::from([5, 778]);
        assert!(check(&a, &member, &Method::POST).is_err());
        // Unknown credentials: read only.
        assert!(check(&a, &Peer::default(), &Method::GET).is_ok());
        assert!(check(&a, &Peer::default(), &Method::POST).is_err());
    }
}
