//! `--user`, `--group`, `--umask`, `--chdir`.
//!
//! The working directory and the umask are set first thing (so relative paths and the
//! mode of a Unix socket follow them). The user and group are taken on by the whole
//! server right after its listeners are bound (ports below 1024 need root) and before
//! the multiprocess directory, the pid file and any worker exist, so everything the
//! server creates afterwards belongs to that user. (gunicorn keeps its master as root
//! and switches the workers only; muster's supervisor needs no privilege once bound.)

use nix::unistd::{Gid, Group, Uid, User};

use crate::config::Config;
use crate::listeners::Listener;
use crate::ServerError;

/// The user and group to run as, resolved from names or numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    uid: Option<Uid>,
    gid: Option<Gid>,
}

impl Identity {
    /// Resolves `--user` and `--group` (names or numeric ids). With only `--user`,
    /// the group is the user's primary group.
    pub(crate) fn resolve(config: &Config) -> Result<Identity, ServerError> {
        let user = match &config.user {
            None => None,
            Some(u) => Some(match u.parse::<u32>() {
                Ok(n) => User::from_uid(Uid::from_raw(n))
                    .ok()
                    .flatten()
                    .ok_or_else(|| ServerError::Config(format!("user: no user with uid {n}")))?,
                Err(_) => User::from_name(u)
                    .ok()
                    .flatten()
                    .ok_or_else(|| ServerError::Config(format!("user: no user named {u:?}")))?,
            }),
        };
        let gid = match &config.group {
            None => user.as_ref().map(|u| u.gid),
            Some(g) => Some(match g.parse::<u32>() {
                Ok(n) => Gid::from_raw(n),
                Err(_) => {
                    Group::from_name(g)
                        .ok()
                        .flatten()
                        .ok_or_else(|| ServerError::Config(format!("group: no group named {g:?}")))?
                        .gid
                }
            }),
        };
        Ok(Identity {
            uid: user.map(|u| u.uid),
            gid,
        })
    }

    /// Becomes this user and group (no-op when neither is set or they are already
    /// ours). Unix sockets this process bound are handed over, so it can remove them
    /// at exit.
    pub(crate) fn assume(&self, listeners: &[&Listener]) -> Result<(), ServerError> {
        let io = |what: &str, e: nix::Error| ServerError::io(what, std::io::Error::from(e));
        if self.uid.is_none() && self.gid.is_none() {
            return Ok(());
        }
        for l in listeners {
            if let Listener::Unix {
                path: Some(p),
                owner: Some(_),
                ..
            } = l
            {
                nix::unistd::chown(p.as_path(), self.uid, self.gid)
                    .map_err(|e| io("chown of a Unix socket", e))?;
            }
        }
        if let Some(gid) = self.gid.filter(|g| *g != Gid::current()) {
            nix::unistd::setgroups(&[gid]).map_err(|e| io("setgroups", e))?;
            nix::unistd::setgid(gid).map_err(|e| io("setgid", e))?;
        }
        if let Some(uid) = self.uid.filter(|u| *u != Uid::current()) {
            nix::unistd::setuid(uid).map_err(|e| io("setuid", e))?;
        }
        Ok(())
    }
}

/// `--chdir` and `--umask`, first thing at start.
pub(crate) fn enter(config: &Config) -> Result<(), ServerError> {
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir)
            .map_err(|e| ServerError::Config(format!("chdir {}: {e}", dir.display())))?;
    }
    if let Some(mask) = config.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}
