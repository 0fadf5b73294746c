//! `--check-config` (gunicorn's name): everything that can be checked without starting
//! the server or touching a running one. Nothing is bound, forked or cleared.

use std::net::ToSocketAddrs;
use std::path::Path;

use crate::config::Config;
use crate::ServerError;

/// Checks the configuration: values, the web config file (TLS files, bcrypt hashes,
/// weak passwords), listen addresses (resolvable; a Unix socket's directory exists; an
/// `fd://` descriptor is a listening socket), the multiprocess directory (if it exists:
/// a directory), the access log (writable), user, group and working directory.
pub(crate) fn check_config(config: &Config) -> Result<(), ServerError> {
    config.validate()?;
    if let Some(path) = &config.web_config_file {
        crate::webconfig::WebConfig::load(path, config.allow_weak_credentials)?;
    }
    for spec in config.bind.iter().chain(config.metrics_bind.iter()) {
        check_bind(spec)?;
    }
    if let Some(dir) = &config.multiproc_dir {
        if dir.exists() && !dir.is_dir() {
            return Err(ServerError::MultiprocDir(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
    }
    if let Some(path) = &config.access_logfile {
        crate::accesslog::AccessLog::open(path, &config.access_logformat)?;
    }
    crate::privileges::Identity::resolve(config)?;
    if let Some(dir) = &config.chdir {
        if !dir.is_dir() {
            return Err(ServerError::Config(format!(
                "chdir: {} is not a directory",
                dir.display()
            )));
        }
    }
    Ok(())
}

fn check_bind(spec: &str) -> Result<(), ServerError> {
    let err = |reason: String| ServerError::Bind {
        addr: spec.to_string(),
        reason,
    };
    if let Some(path) = spec.strip_prefix("unix:") {
        let parent = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(err(format!("{} is not a directory", parent.display())));
        }
        return Ok(());
    }
    if let Some(n) = spec.strip_prefix("fd://") {
        let fd: i32 = n
            .parse()
            .map_err(|_| err("fd:// needs a descriptor number".into()))?;
        // SAFETY: only borrowed for the duration of the check.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let listening =
            nix::sys::socket::getsockopt(&borrowed, nix::sys::socket::sockopt::AcceptConn)
                .unwrap_or(false);
        return if listening {
            Ok(())
        } else {
            Err(err(format!("descriptor {fd} is not a listening socket")))
        };
    }
    spec.to_socket_addrs()
        .map(|_| ())
        .map_err(|e| err(format!("cannot resolve: {e}")))
}
